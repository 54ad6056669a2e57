export * from './local.js';
export * from './mlflow/client.js';
export * from './mlflow/uploader.js';
export * from './mlflow/tracker.js';
export * from './mlflow/server.js';
export * from './mlflow/sync.js';
export * from './mlflow/choice.js';
export * from './system.js';
