import { CommanderError } from 'commander';
import { isContrastError, UsageError } from '@contrast/core/errors';
import type { CliContext } from './context.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';
import { Output } from './output.js';
import { createProgram } from './program.js';

/** Commander's codes for help and version, which end the command successfully. */
const HELP_CODES = new Set(['commander.helpDisplayed', 'commander.help', 'commander.version']);

/**
 * Runs `contrast <argv>` in this process and returns its exit status (see
 * exit-codes.ts). Usage errors and coded ContrastErrors are printed as
 * `error [CODE]: message` with their fix on stderr, never a stack trace; with
 * --json the error is also the one JSON object on stdout. Any other error is
 * unexpected and rethrown (bin.ts prints it with its stack).
 */
export async function main(argv: string[]): Promise<number> {
  const ctx: CliContext = { argv, exitCode: ExitCode.ok };
  try {
    await createProgram(ctx).parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (e) {
    if (e instanceof CommanderError && HELP_CODES.has(e.code)) {
      return e.exitCode === 0 ? ExitCode.ok : ExitCode.usage; // help on error: no command given
    }
    const error = e instanceof CommanderError ? usageError(e) : e;
    const code = exitCodeFor(error);
    if (code === undefined || !isContrastError(error)) throw e;
    process.stderr.write(`\nerror [${error.code}]: ${error.message}\n`);
    new Output({ json: argv.includes('--json') }).data({
      ok: false,
      exitCode: code,
      error: {
        code: error.code,
        message: error.message.split('\n  fix: ')[0],
        ...(error.hint ? { fix: error.hint } : {}),
      },
    });
    return code;
  }
}

/** A commander parse error as a coded usage error whose fix points at the command's help. */
function usageError(e: CommanderError): UsageError {
  const command = (e as CommanderError & { command?: string }).command ?? 'contrast';
  const [first = e.message, ...rest] = e.message.replace(/^error: /, '').split('\n');
  // "... argument '-1' is invalid. <the parser's advice>" and "(Did you mean --set?)"
  const [message, advice] = first.split(/(?<= is invalid)\. /);
  const suggestion = rest.join(' ').replace(/^\((.*)\)$/, '$1');
  return new UsageError(`${command}: ${message}`, {
    hint: advice || suggestion || `see '${command} --help' for its arguments and flags`,
  });
}
