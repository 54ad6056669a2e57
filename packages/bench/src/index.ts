export * from './spec.js';
export * from './worker.js';
export * from './torch.js';
