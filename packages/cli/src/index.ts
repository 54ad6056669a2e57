export { main, builtinPlugins, formatResult } from './main.js';
export * from './queue.js';
