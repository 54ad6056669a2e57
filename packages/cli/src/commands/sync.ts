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

Server: the one each run folder's mlflow.json records; MLFLOW_TRACKING_URI does
not move a run. --tracking-uri moves it: a new MLflow run on that server gets the
whole run folder (params, dataset, every metric record, artifacts, status), as
\`contrast train --resume <dir> --set tracking.uri=URL\` does; the run on the old
server is left as it is, and mlflow.json records the new one. A study folder
moves whole (its children link to the parent's new run).

Examples:
  contrast sync runs/studies/momentum
  contrast sync --tracking-uri http://127.0.0.1:5000 runs/moco-fmnist-20260101T000000Z`;

/** `contrast sync`: upload whatever a run (or a study's runs) still has spooled. */
export function registerSync(program: Command, ctx: CliContext): void {
  program
    .command('sync')
    .description('upload to MLflow whatever a run or study folder still has spooled')
    .argument(
      '<run-or-study-dir>',
      'a run folder, or a study folder (its parent run and every child)',
    )
    .option(
      '--tracking-uri <url>',
      'move the run (or study) to this MLflow server instead of the one its mlflow.json records',
    )
    .addHelpText('after', HELP)
    .action(async (target: string, flags: { trackingUri?: string }) => {
      const out = new Output();
      const { formatSyncedRun, parseTrackingUri, syncRuns } = await import('@contrast/tracking');
      const runs = await syncRuns(target, {
        warn: out.warn,
        onRun: (r) => out.result(formatSyncedRun(r).trimEnd()),
        ...(flags.trackingUri ? { trackingUri: flags.trackingUri } : {}),
      });
      const env = process.env.MLFLOW_TRACKING_URI;
      if (!flags.trackingUri && env) {
        let shown = '';
        try {
          shown = parseTrackingUri(env).base;
        } catch {
          // not an address: sync never used it, nothing to point out
        }
        const elsewhere = runs.filter((r) => r.uri !== shown);
        if (shown && elsewhere.length) {
          out.warn(
            `MLFLOW_TRACKING_URI=${shown} is not used: a run stays on the server its mlflow.json records (${[...new Set(elsewhere.map((r) => r.uri))].join(', ')}); to move it there: contrast sync --tracking-uri ${shown} ${target}`,
          );
        }
      }
      ctx.exitCode = ExitCode.ok;
    });
}
