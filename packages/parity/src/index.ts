export * from './compare.js';
export * from './record.js';
export * from './methods.js';
export * from './step.js';
export * from './step-parity.js';
export * from './python.js';
export * from './optim.js';
