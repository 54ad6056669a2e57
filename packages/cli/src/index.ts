export { main, builtinPlugins, formatResult } from './main.js';
export * from './queue.js';
export * from './parallel.js';
