export * from './knn.js';
export * from './linear.js';
export * from './protocol.js';
export * from './health.js';
