// bin.ts imports main.js alone: `contrast --help` loads no plugin, study or TensorFlow backend
export { main } from './main.js';
export {
  builtinPlugins,
  catalogFor,
  catalogForRun,
  catalogForStudy,
  loadPlugins,
} from './plugins.js';
export { formatResult, describeKnn } from './format.js';
export type { ContrastApi } from './plugins.js';
export { newMethod, methodTemplate } from './scaffold.js';
export { createProgram, allCommands, cliVersion, COMMANDS } from './program.js';
export { ExitCode, exitCodeFor, signalExitCode } from './exit-codes.js';
export { StopSignals, STOP_SIGNALS } from './signals.js';
export { Output } from './output.js';
export * from './queue.js';
export * from './parallel.js';
