import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { Output } from '../output.js';

const HELP = `
Safe to repeat: accepted records are never sent twice (the run folder's
mlflow.json holds the MLflow run id and the upload cursor, written atomically
after each accepted request).

Stopping: SIGINT, SIGTERM and SIGHUP end it at once (exit 130 / 143 / 129); the
cursor stays at the last accepted request, so the next sync continues there.

Example:
  contrast sync runs/studies/momentum`;

/** `contrast sync`: upload whatever a run (or a study's runs) still has spooled. */
export function registerSync(program: Command, ctx: CliContext): void {
  program
    .command('sync')
    .description('upload to MLflow whatever a run or study folder still has spooled')
    .argument(
      '<run-or-study-dir>',
      'a run folder, or a study folder (its parent run and every child)',
    )
    .addHelpText('after', HELP)
    .action(async (target: string) => {
      const out = new Output();
      const { formatSyncedRun, syncRuns } = await import('@contrast/tracking');
      await syncRuns(target, {
        warn: out.warn,
        onRun: (r) => out.result(formatSyncedRun(r).trimEnd()),
      });
      ctx.exitCode = ExitCode.ok;
    });
}
