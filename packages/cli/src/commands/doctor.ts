import type { Command } from 'commander';
import type { DoctorCheck } from '@contrast/backend';
import type { ExperimentConfig } from '@contrast/core';
import type { CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { jsonOption, QUEUE_ENV, queueOption, setOption } from '../options.js';
import { Output } from '../output.js';

interface DoctorFlags {
  set: string[];
  queue?: string;
  json?: boolean;
}

const HELP = `
Checks: the native TensorFlow binding and backend, thread settings, the dataset
(every file read and verified: gzip CRC, IDX header and sizes), the MLflow
server (tracking.uri or MLFLOW_TRACKING_URI), Redis (--queue or $${QUEUE_ENV}),
the cache and the run folder. Each failed check prints its fix; exit 1 if any failed.

Examples:
  contrast doctor
  contrast doctor experiments/moco-fmnist.yaml --queue redis://127.0.0.1:6379 --json`;

/** `contrast doctor`: what is there, and what to do about what is not. */
export function registerDoctor(program: Command, ctx: CliContext): void {
  program
    .command('doctor')
    .description('check the backend, dataset, MLflow, Redis and run folder, with fixes')
    .argument('[experiment]', "check this experiment's dataset, tracking server and run folder")
    .addOption(setOption())
    .addOption(queueOption('also check this Redis server (distributed studies)'))
    .addOption(jsonOption())
    .addHelpText('after', HELP)
    .action(async (file: string | undefined, flags: DoctorFlags) => {
      ctx.exitCode = await doctor(file, flags);
    });
}

async function doctor(file: string | undefined, flags: DoctorFlags): Promise<number> {
  const out = new Output(flags);
  const { applyOverrides, loadExperiment, parseExperiment } = await import('@contrast/core');
  const defaults = { name: 'doctor', strategy: { name: 'momentum-queue' } }; // the default experiment's parts
  const note = { note: (line: string) => out.info(line) };
  const config = file
    ? loadExperiment(file, flags.set, note)
    : parseExperiment(applyOverrides(defaults, flags.set, note));
  const { runDoctor } = await import('@contrast/backend');
  const checks = await runDoctor({ datasetDirs: {}, runDir: config.tracking.dir });
  checks.splice(3, 0, await datasetCheck(config));
  checks.push(await mlflowCheck(config), await redisCheck(flags.queue));
  const lines = checks.map((c) => {
    const head = `${c.ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(22)} ${c.detail}`;
    return c.fix ? `${head}\n     ${''.padEnd(22)} fix: ${c.fix}` : head;
  });
  out.result(lines.join('\n'));
  const ok = checks.every((c) => c.ok);
  const exitCode = ok ? ExitCode.ok : ExitCode.failed;
  out.data({ command: 'doctor', ok, exitCode, checks });
  return exitCode;
}

/**
 * Loads the dataset as training would: every file read and verified (for IDX:
 * gzip CRC, magic, sizes); a streamed image folder's index is built (or read)
 * and its evaluation images decoded.
 */
async function datasetCheck(config: ExperimentConfig): Promise<DoctorCheck> {
  const name = `dataset ${config.data.dataset}`;
  const [{ createCatalog }, { builtinPlugins }, { isStreamed }] = await Promise.all([
    import('@contrast/trainer'),
    import('../plugins.js'),
    import('@contrast/core'),
  ]);
  try {
    const ds = await createCatalog(builtinPlugins()).datasets.get(config.data.dataset)(config.data);
    const train = isStreamed(ds.train)
      ? `${ds.train.n} train images indexed (decoded while training) / ${ds.test.n} test images verified`
      : `${ds.train.n} train / ${ds.test.n} test images verified`;
    return {
      name,
      ok: true,
      detail: `${ds.source ?? config.data.root ?? ''} (${train}${ds.digest ? `, digest ${ds.digest}` : ''})`,
    };
  } catch (e) {
    return failedCheck(name, e, 'see the message; data.root points at the dataset folder');
  }
}

/** Reaches the MLflow server read-only (looks up an experiment; creates nothing). */
async function mlflowCheck(config: ExperimentConfig): Promise<DoctorCheck> {
  const { chooseTrackingUri, MlflowClient } = await import('@contrast/tracking');
  // the same choice training makes (tracking.uri, else MLFLOW_TRACKING_URI; 'off' is off)
  const { uri, message } = chooseTrackingUri({
    configUri: config.tracking.uri,
    envUri: process.env.MLFLOW_TRACKING_URI,
  });
  const name = 'mlflow';
  if (!uri) {
    return {
      name,
      ok: true,
      detail: message ?? 'not configured (tracking.uri / MLFLOW_TRACKING_URI): run folders only',
    };
  }
  try {
    const client = new MlflowClient(uri, { attempts: 1, timeoutMs: 5000 });
    await client.getExperimentByName(config.tracking.experiment || config.name);
    return { name, ok: true, detail: `${client.base} answers` };
  } catch (e) {
    return failedCheck(
      name,
      e,
      (e as { retryable?: boolean }).retryable
        ? 'start the server (mlflow server --backend-store-uri sqlite:///mlflow.db --port 5000) or fix the address; meanwhile runs spool to their folder and `contrast sync <run>` uploads them later'
        : 'check that the address is an MLflow tracking server (its /api/2.0/mlflow REST API)',
    );
  }
}

/** Pings Redis when a queue URL is given. */
async function redisCheck(url: string | undefined): Promise<DoctorCheck> {
  const name = 'redis';
  if (!url) return { name, ok: true, detail: `not configured (--queue or ${QUEUE_ENV})` };
  const { checkRedis } = await import('../queue.js');
  try {
    await checkRedis(url);
    return { name, ok: true, detail: `${url} answers` };
  } catch (e) {
    return failedCheck(name, e, 'start redis-server there');
  }
}

/** A failed check from an error: its first line, and its own fix (a coded error's hint) or `fix`. */
function failedCheck(name: string, e: unknown, fix: string): DoctorCheck {
  const err = e as Error & { hint?: string };
  return {
    name,
    ok: false,
    detail: err.message?.split('\n')[0] ?? String(e),
    fix: err.hint ?? fix,
  };
}
