export * from './knn.js';
export * from './linear.js';
export * from './health.js';
