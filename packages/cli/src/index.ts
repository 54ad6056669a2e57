export { main, builtinPlugins, formatResult, describeKnn } from './main.js';
export { createProgram, allCommands, cliVersion, COMMANDS } from './program.js';
export { ExitCode, exitCodeFor, signalExitCode } from './exit-codes.js';
export { StopSignals, STOP_SIGNALS } from './signals.js';
export { Output } from './output.js';
export * from './queue.js';
export * from './parallel.js';
