export {
  freePort,
  MLFLOW_VERSION,
  mlflowBinary,
  MlflowServer,
  type MlflowServerOptions,
} from './server.js';
