export { MlflowClient } from './client.js';
export {
  hasErrorCode,
  MlflowError,
  type MlflowErrorCode,
  type MlflowErrorOptions,
} from './errors.js';
export {
  checkEntries,
  chunkLogBatch,
  LOG_BATCH_LIMITS,
  MLFLOW_LIMITS,
  type LogBatchChunk,
} from './limits.js';
export {
  HttpTransport,
  retryAfterMs,
  type ClientOptions,
  type FetchLike,
  type HttpMethod,
  type RequestSpec,
} from './transport.js';
export { artifactProxyPath, authFromEnv, parseTrackingUri, type MlflowAuth } from './uri.js';
export type * from './types.js';
