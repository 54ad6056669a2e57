export {
  main,
  builtinPlugins,
  catalogFor,
  catalogForRun,
  catalogForStudy,
  formatResult,
  loadPlugins,
} from './main.js';
export type { ContrastApi } from './plugins.js';
export { newMethod, methodTemplate } from './scaffold.js';
export * from './queue.js';
export * from './parallel.js';
