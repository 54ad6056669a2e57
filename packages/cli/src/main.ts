import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseArgs } from 'node:util';
import { ConfigError, isContrastError, loadExperiment } from '@contrast/core';
import { catalogFor, catalogForRun, catalogForStudy } from './plugins.js';
import { newMethod } from './scaffold.js';
import { runOneConfig, runStudyParallel } from './parallel.js';
import { runStudyOnQueue, startWorker, studyStatus } from './queue.js';
import { initBackend, provisionNativeBackend, runDoctor } from '@contrast/backend';
import { fashionMnistDir } from '@contrast/data';
import { evaluateRun, runExperiment, type TrainResult } from '@contrast/trainer';
import { loadStudy, readResults, runStudy, writeReport } from '@contrast/study';
import { syncRuns } from '@contrast/tracking';

export {
  builtinPlugins,
  catalogFor,
  catalogForRun,
  catalogForStudy,
  loadPlugins,
} from './plugins.js';

const USAGE = `usage: contrast <command>

  train <experiment.yaml> [--set key=value]...   train and evaluate an experiment
        [--plugin <package-or-path>]...          also load these method plugins
  train --resume <run-dir> [--fallback]          continue a run from its newest checkpoint
                                                 (--fallback: use an older one if the newest is corrupt)
  doctor                                         check backend, threads, dataset, run folder
  study run <study.yaml> [--scale F] [--out DIR] run every configuration of a study, then report
                         [--parallel N]          N configurations at a time, in child processes
  study run <study.yaml> --queue redis://h:p    queue the configurations on BullMQ and wait for workers
  study status <study.yaml> --queue redis://h:p show queued / running / done / failed configurations
  study report <study-output-dir>                rewrite table.md, results.csv and knn-vs-k.png
  worker --queue redis://host:port               run queued study configurations, one at a time
  eval knn <run-dir> [--bank N] [--test N]       kNN top-1 of a run's encoder on the full splits
  eval linear <run-dir> [--epochs N] [--lr X] [--train N]
                                                 linear probe (frozen backbone; SGD lr 30, momentum 0.9,
                                                 wd 0, lr x0.1 at 60% and 80%): top-1 / top-5
  sync <run-or-study-dir>                        upload to MLflow whatever a run still has spooled
  setup                                          build the native TensorFlow binding (offline)
  new-method <name> [--dir DIR]                  write a working method plugin skeleton with a test
                                                 (default DIR: plugins/<name>)

MLflow: set tracking.uri (or MLFLOW_TRACKING_URI) to an MLflow server, e.g. http://127.0.0.1:5000;
credentials from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.

Examples:
  contrast train experiments/moco-fmnist.yaml --set optim.epochs=1 --set strategy.momentum=0.999
`;

const pct = (x: number | undefined) =>
  x === undefined ? '   n/a' : `${(100 * x).toFixed(2).padStart(6)}%`;

export function formatResult(r: TrainResult, runPath: string): string {
  const rows = [
    `kNN top-1 on the Fashion-MNIST test split (k = 200, t = 0.1, backbone features):`,
    `  raw pixels           ${pct(r.knn.rawPixels)}`,
    `  random-init encoder  ${pct(r.knn.randomInit)}`,
    `  trained encoder      ${pct(r.knn.trained)}   (${r.status}, ${r.steps} steps, ${r.epochs} epochs)`,
    `training ${r.imgPerSec.toFixed(1)} img/s, wall ${(r.wallSeconds / 60).toFixed(1)} min, peak RSS ${r.peakRssMb.toFixed(0)} MB`,
    `run stored in ${runPath}`,
  ];
  return rows.join('\n');
}

async function train(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      set: { type: 'string', multiple: true },
      quiet: { type: 'boolean' },
      resume: { type: 'string' },
      fallback: { type: 'boolean' },
      plugin: { type: 'string', multiple: true },
    },
  });
  const file = positionals[0] ?? (values.resume ? join(values.resume, 'config.yaml') : undefined);
  if (!file) {
    process.stderr.write(USAGE);
    return 2;
  }
  const config = loadExperiment(file, values.set ?? []);
  await initBackend();
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write(
      '\ninterrupt: finishing the current step and writing the run (Ctrl-C again to abort)\n',
    );
  };
  process.on('SIGINT', onSigint);
  const catalog = await catalogFor(config, values.plugin ?? []);
  const { runPath, result } = await runExperiment(config, catalog, {
    progress: !values.quiet,
    shouldStop: () => stop,
    mlflow: { source: ['contrast', 'train', ...args].join(' ') },
    ...(values.resume
      ? { resumeFrom: { runPath: values.resume, fallback: values.fallback ?? false } }
      : {}),
  });
  process.off('SIGINT', onSigint);
  process.stdout.write(`${formatResult(result, runPath)}\n`);
  return result.status === 'finished' ? 0 : 130;
}

async function doctor(): Promise<number> {
  const checks = await runDoctor({
    datasetDirs: { 'fashion-mnist': [fashionMnistDir()] },
    runDir: 'runs',
  });
  for (const c of checks) {
    process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(22)} ${c.detail}\n`);
    if (c.fix) process.stdout.write(`     ${''.padEnd(22)} fix: ${c.fix}\n`);
  }
  return checks.every((c) => c.ok) ? 0 : 1;
}

async function study(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      scale: { type: 'string' },
      out: { type: 'string' },
      quiet: { type: 'boolean' },
      queue: { type: 'string' },
      parallel: { type: 'string' },
      id: { type: 'string' },
    },
  });
  const target = positionals[0];
  if (!target || !['run', 'report', 'status', 'run-config'].includes(sub ?? '')) {
    process.stderr.write(USAGE);
    return 2;
  }
  if (sub === 'report') {
    const results = readResults(target);
    if (results.length === 0) {
      process.stderr.write(`contrast: no results.jsonl with results in ${target}\n`);
      return 2;
    }
    const saved = join(target, 'study.yaml');
    const meta = existsSync(saved)
      ? (parseYaml(readFileSync(saved, 'utf8')) as {
          description?: string;
          x?: string;
          xScale?: 'log' | 'linear';
        })
      : {};
    const files = await writeReport(
      target,
      results,
      meta.description || target,
      meta.x,
      meta.xScale,
    );
    process.stdout.write(`${files.join('\n')}\n`);
    return 0;
  }
  loadStudy(target); // validate before the backend loads
  const scale = values.scale === undefined ? 1 : Number(values.scale);
  const where = { scale, ...(values.out ? { out: values.out } : {}) };
  if (sub === 'status') {
    if (!values.queue)
      throw new ConfigError('--queue', 'status reads the queue: give --queue redis://host:port');
    const by = await studyStatus(target, await catalogForStudy(target), {
      queue: values.queue,
      ...where,
    });
    for (const [state, runs] of Object.entries(by)) {
      process.stdout.write(`${state} (${runs.length})\n${runs.map((r) => `  ${r}`).join('\n')}\n`);
    }
    return 0;
  }
  if (sub === 'run-config') {
    // one configuration, for --parallel: the result goes to stdout as JSON
    await initBackend();
    const record = await runOneConfig(target, await catalogForStudy(target), {
      id: values.id ?? '',
      out: values.out ?? join('runs', 'studies', loadStudy(target).name),
      scale,
      log: (l) => process.stderr.write(`${l}\n`),
    });
    process.stdout.write(`${JSON.stringify(record)}\n`);
    return 0;
  }
  const t0 = performance.now();
  const parallel = values.parallel === undefined ? 1 : Number(values.parallel);
  if (!Number.isInteger(parallel) || parallel < 1) {
    throw new ConfigError('--parallel', `must be a whole number >= 1, got '${values.parallel}'`);
  }
  if (parallel > 1 && !values.queue) {
    const r = await runStudyParallel(target, await catalogForStudy(target), {
      parallel,
      ...where,
    });
    process.stdout.write(`${readFileSync(r.reportFiles[0]!, 'utf8')}\n`);
    process.stdout.write(
      `${r.results.length} runs, ${r.failed.length} failed; wall time ${((performance.now() - t0) / 60000).toFixed(1)} min\nin ${r.outDir}\n`,
    );
    return r.failed.length ? 1 : 0;
  }
  if (values.queue) {
    const r = await runStudyOnQueue(target, await catalogForStudy(target), {
      queue: values.queue,
      ...where,
    });
    process.stdout.write(`${readFileSync(r.reportFiles[0]!, 'utf8')}\n`);
    process.stdout.write(
      `${r.results.length} runs done, ${r.failed.length} failed; wall time ${((performance.now() - t0) / 60000).toFixed(1)} min\nin ${r.outDir}\n`,
    );
    return r.failed.length ? 1 : 0;
  }
  await initBackend();
  const { outDir, results, reportFiles } = await runStudy(target, await catalogForStudy(target), {
    ...where,
    progress: !values.quiet,
  });
  process.stdout.write(`${readFileSync(reportFiles[0]!, 'utf8')}\n`);
  process.stdout.write(
    `${results.length} runs; wall time ${((performance.now() - t0) / 60000).toFixed(1)} min\nreport: ${reportFiles.join(', ')}\nin ${outDir}\n`,
  );
  return 0;
}

async function evaluate(args: string[]): Promise<number> {
  const [kind, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      epochs: { type: 'string' },
      lr: { type: 'string' },
      train: { type: 'string' },
      bank: { type: 'string' },
      test: { type: 'string' },
    },
  });
  const target = positionals[0];
  if (!target || (kind !== 'knn' && kind !== 'linear')) {
    process.stderr.write(USAGE);
    return 2;
  }
  const num = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) {
      throw new ConfigError(`--${flag}`, `must be a non-negative number, got '${v}'`);
    }
    return n;
  };
  await initBackend();
  const epochs = num('epochs', values.epochs);
  const lr = num('lr', values.lr);
  const trainSize = num('train', values.train);
  const bankSize = num('bank', values.bank);
  const testSize = num('test', values.test);
  const out = await evaluateRun(target, kind, await catalogForRun(target), {
    probe: { ...(epochs !== undefined ? { epochs } : {}), ...(lr !== undefined ? { lr } : {}) },
    knn: {
      ...(bankSize !== undefined ? { bankSize } : {}),
      ...(testSize !== undefined ? { testSize } : {}),
    },
    ...(trainSize !== undefined ? { trainSize } : {}),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  if (out.skipped) {
    process.stdout.write(`${out.skipped}\n`);
    return 0;
  }
  process.stdout.write(
    `${Object.entries(out.results)
      .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
      .join(', ')}\n${out.seconds.toFixed(1)} s; weights ${out.weights}; written to ${out.file}\n`,
  );
  return 0;
}

async function worker(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { queue: { type: 'string' }, 'lock-seconds': { type: 'string' } },
  });
  if (!values.queue) throw new ConfigError('--queue', 'a worker needs --queue redis://host:port');
  const lockSeconds = values['lock-seconds'] === undefined ? 30 : Number(values['lock-seconds']);
  if (!(lockSeconds > 0)) throw new ConfigError('--lock-seconds', 'must be a positive number');
  const w = await startWorker({
    queue: values.queue,
    lockSeconds,
    log: (l) => process.stderr.write(`${l}\n`),
  });
  process.stderr.write(`[worker ${process.pid}] waiting for jobs on ${values.queue}\n`);
  await new Promise<void>((resolveStop) => {
    const stop = () => resolveStop();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await w.close();
  return 0;
}

async function sync(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  const target = positionals[0];
  if (!target) {
    process.stderr.write(USAGE);
    return 2;
  }
  const synced = await syncRuns(target, { warn: (l) => process.stderr.write(`${l}\n`) });
  for (const r of synced) {
    process.stdout.write(
      `${r.dir}: MLflow run ${r.runId} (experiment ${r.experimentId}) complete; ` +
        `${r.uploadedNow} metric records uploaded now, ${r.metricRecordsSent} records / ${r.metricPointsSent} points in all, ${r.artifacts} artifacts\n`,
    );
  }
  return 0;
}

function scaffold(args: string[]): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { dir: { type: 'string' } },
  });
  const name = positionals[0];
  if (!name) {
    process.stderr.write(USAGE);
    return 2;
  }
  const files = newMethod(name, values.dir);
  process.stdout.write(
    `${files.join('\n')}\n` +
      `next: pnpm install && pnpm exec vitest run ${values.dir ?? `plugins/${name}`}\n`,
  );
  return 0;
}

function setup(): number {
  const r = provisionNativeBackend({ log: (l) => process.stderr.write(`[setup] ${l}\n`) });
  process.stdout.write(
    `native TensorFlow binding ${r.action === 'present' ? 'already present' : 'built'}: ${r.bindingPath}\n`,
  );
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'train':
        return await train(rest);
      case 'doctor':
        return await doctor();
      case 'study':
        return await study(rest);
      case 'eval':
        return await evaluate(rest);
      case 'sync':
        return await sync(rest);
      case 'worker':
        return await worker(rest);
      case 'setup':
        return setup();
      case 'new-method':
        return scaffold(rest);
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        process.stderr.write(`contrast: unknown command '${command}'\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    if (isContrastError(e)) {
      process.stderr.write(`\nerror [${e.code}]: ${e.message}\n`);
      return 2;
    }
    if (e instanceof TypeError && /parseArgs|Unknown option/i.test(String(e.message))) {
      process.stderr.write(`contrast: ${e.message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}
