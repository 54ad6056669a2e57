import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { commandPath, type CliContext, type RegisterCommand } from './context.js';
import { registerDoctor } from './commands/doctor.js';
import { registerEmbed } from './commands/embed.js';
import { registerEval } from './commands/eval.js';
import { registerExport } from './commands/export.js';
import { registerNewMethod } from './commands/new-method.js';
import { registerSetup } from './commands/setup.js';
import { registerStudy } from './commands/study.js';
import { registerSync } from './commands/sync.js';
import { registerTrain } from './commands/train.js';
import { registerWorker } from './commands/worker.js';
import { QUEUE_ENV } from './options.js';

/** Every command, in the order help lists them. New commands add their module here. */
export const COMMANDS: readonly RegisterCommand[] = [
  registerTrain,
  registerEval,
  registerExport,
  registerEmbed,
  registerStudy,
  registerWorker,
  registerSync,
  registerDoctor,
  registerSetup,
  registerNewMethod,
];

const EPILOG = `
Environment:
  MLFLOW_TRACKING_URI        MLflow server (or tracking.uri), e.g. http://127.0.0.1:5000
  MLFLOW_TRACKING_TOKEN      credentials, or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD
  ${QUEUE_ENV.padEnd(26)} Redis URL for worker, study status and doctor (instead of --queue)
  CONTRAST_FASHION_MNIST     folder with the Fashion-MNIST files
  TF_CPP_MIN_LOG_LEVEL=0     also show TensorFlow's own log (as --verbose)

Exit status: 0 done; 1 done but something failed (a doctor check, a study
configuration); 2 usage or input error (the message says what to fix);
3 training diverged (NaN/Infinity loss); 130 / 143 / 129 stopped by
SIGINT / SIGTERM / SIGHUP after checkpointing.

Run 'contrast <command> --help' for a command's flags and examples.`;

/** The package's version (package.json beside dist/ or src/). */
export function cliVersion(): string {
  const pkg = new URL('../package.json', import.meta.url);
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

/**
 * The `contrast` program (commander): every command registered, help and
 * errors routed to stdout / stderr at call time, and errors thrown (not
 * process.exit) so main() decides the exit status. Errors carry the path of
 * the command they came from, for the fix line.
 */
export function createProgram(ctx: CliContext): Command {
  const program = new Command('contrast')
    .description(
      'Contrastive self-supervised learning of visual representations (MoCo and friends) on native TensorFlow',
    )
    .version(cliVersion(), '-V, --version', 'print the version')
    .option('--verbose', "also show TensorFlow's start-up log (sets TF_CPP_MIN_LOG_LEVEL=0)")
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
      outputError: () => {}, // main() prints usage errors with their code and fix
    })
    .showSuggestionAfterError(true)
    .addHelpText('after', EPILOG)
    .hook('preAction', () => {
      if (program.opts<{ verbose?: boolean }>().verbose) process.env.TF_CPP_MIN_LOG_LEVEL = '0';
    });
  for (const register of COMMANDS) register(program, ctx);
  for (const cmd of allCommands(program)) {
    cmd.exitOverride((e: CommanderError) => {
      throw Object.assign(e, { command: commandPath(cmd) });
    });
  }
  return program;
}

/** The program and every command under it, hidden ones included. */
export function allCommands(root: Command): Command[] {
  return [root, ...root.commands.flatMap((c) => allCommands(c))];
}
