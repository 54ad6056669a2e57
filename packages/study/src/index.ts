export * from './schema.js';
export * from './expand.js';
export * from './results.js';
export * from './labels.js';
export * from './figures.js';
export * from './render.js';
export * from './report.js';
export * from './run.js';
