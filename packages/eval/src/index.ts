export * from './knn.js';
export * from './linear.js';
