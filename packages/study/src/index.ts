export * from './schema.js';
export * from './expand.js';
export * from './report.js';
export * from './run.js';
