export { main, builtinPlugins, formatResult } from './main.js';
