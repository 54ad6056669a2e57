/**
 * The real `mlflow server` for integration tests lives in mlflow-ts-client's
 * testing entry; re-exported so Contrast's tests keep one import.
 */
export {
  freePort,
  MLFLOW_VERSION,
  mlflowBinary,
  MlflowServer,
  type MlflowServerOptions,
} from 'mlflow-ts-client/testing';
