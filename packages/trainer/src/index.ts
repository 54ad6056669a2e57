export * from './sgd.js';
export * from './step.js';
export * from './progress.js';
export * from './catalog.js';
export * from './trainer.js';
export * from './run.js';
export * from './harness.js';
export * from './checkpoint.js';
