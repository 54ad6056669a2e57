/**
 * The real `mlflow server` for integration tests (MlflowServer, freePort,
 * mlflowBinary, MLFLOW_VERSION) lives in mlflow-ts-client's testing entry;
 * re-exported so Contrast's tests keep one import.
 */
export * from 'mlflow-ts-client/testing';
