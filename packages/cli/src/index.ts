export {
  main,
  builtinPlugins,
  catalogFor,
  catalogForRun,
  catalogForStudy,
  formatResult,
  describeKnn,
  loadPlugins,
} from './main.js';
export type { ContrastApi } from './plugins.js';
export { newMethod, methodTemplate } from './scaffold.js';
export { createProgram, allCommands, cliVersion, COMMANDS } from './program.js';
export { ExitCode, exitCodeFor, signalExitCode } from './exit-codes.js';
export { StopSignals, STOP_SIGNALS } from './signals.js';
export { Output } from './output.js';
export * from './queue.js';
export * from './parallel.js';
