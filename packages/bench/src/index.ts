export * from './spec.js';
export * from './worker.js';
