import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
} from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { parse } from 'yaml';
import * as tf from '@tensorflow/tfjs';
import {
  checkNames,
  ConfigError,
  configDiff,
  ContrastError,
  loadDataset,
  parseExperiment,
  resolveLoss,
  resolveModel,
  RUN_SETTINGS,
  StateError,
  type Catalog,
  type Collectives,
  type DecodedBundle,
  type ExperimentConfig,
  type Tracker,
  type TrainingDataset,
} from '@contrast/core';
import {
  checkRunRoot,
  chooseTrackingUri,
  createRunDirectory,
  hasMlflowState,
  LocalRunTracker,
  lockRun,
  MlflowTracker,
  MlflowUploader,
  probeTrackingServer,
  recordedTracking,
  RUN_LOCK_FILE,
  type RunLock,
  type MlflowTrackerOptions,
  type RunDirectory,
} from '@contrast/tracking';
import { checkpointDir, listCheckpoints, loadCheckpoint } from './checkpoint.js';
import { createSession, type TrainingSession } from './session.js';
import { Trainer, type TrainOptions, type TrainResult } from './trainer.js';

export interface RunOutcome {
  runPath: string;
  result: TrainResult;
}

export interface RunOptions extends TrainOptions {
  dataset?: TrainingDataset;
  /** MLflow: experiment name override, parent study folder, and what started the run. */
  mlflow?: { experimentName?: string; parentDir?: string; source?: string };
  /** Continue this run folder from its newest usable checkpoint. */
  resumeFrom?: { runPath: string; fallback?: boolean };
  /**
   * A fixed run folder (studies, queue workers): locked, created when absent,
   * resumed from its last checkpoint when a previous attempt left one, and
   * returned as it is when a previous attempt finished it (see runInFixedFolder).
   */
  runPath?: string;
  /**
   * Data-parallel: this worker's collectives. Rank 0 runs this function (it
   * writes the run); the other ranks run `runWorker`.
   */
  collectives?: Collectives;
}

/**
 * Validate -> compose -> create the run -> train -> summarise. Everything that
 * can be refused (names, plugin config, dataset files, run folder, a checkpoint
 * to resume) is checked before the run directory exists, so bad input leaves no
 * half-written run. The run folder is locked (`<run>/run.lock`, see lockRun)
 * before anything is written into it and released when the run ends: a second
 * writer is refused with RunLockedError (CONTRAST_RUN_LOCKED).
 */
export async function runExperiment(
  config: ExperimentConfig,
  catalog: Catalog,
  options: RunOptions = {},
): Promise<RunOutcome> {
  const log = options.log ?? ((l: string) => console.error(l));
  if (options.runPath && !options.resumeFrom) {
    return runInFixedFolder(config, catalog, { ...options, runPath: options.runPath }, log);
  }
  checkNames(config, catalog);
  if (!options.resumeFrom) return startRun(config, catalog, options, log, undefined);
  requireRunFolder(options.resumeFrom.runPath); // a folder that is not a run is refused unlocked
  const lock = lockRun(resolve(options.resumeFrom.runPath));
  try {
    checkResumable(options.resumeFrom.runPath, config, catalog);
    return await startRun(config, catalog, options, log, lock);
  } finally {
    lock.release();
  }
}

/**
 * A fixed run folder (a study's or a queued configuration), delivered at least
 * once: locked first; a finished run (summary.json `finished`, its final state
 * on disk) is returned as it is, not trained again; one with checkpoints is
 * resumed; one that died before its first checkpoint starts again.
 */
async function runInFixedFolder(
  config: ExperimentConfig,
  catalog: Catalog,
  options: RunOptions & { runPath: string },
  log: (l: string) => void,
): Promise<RunOutcome> {
  checkNames(config, catalog);
  const runPath = resolve(options.runPath);
  checkRunRoot(dirname(runPath));
  mkdirSync(runPath, { recursive: true });
  const lock = lockRun(runPath);
  try {
    const finished = finishedResult(runPath);
    if (finished) {
      log(`${runPath} already finished its ${finished.steps} steps: its result stands`);
      return { runPath, result: finished };
    }
    if (listCheckpoints(checkpointDir(runPath)).length > 0) {
      log(`${runPath} has checkpoints from an earlier attempt: resuming`);
      checkResumable(runPath, config, catalog);
      const resumeFrom = { runPath, fallback: true };
      return await startRun(config, catalog, { ...options, resumeFrom }, log, lock);
    }
    for (const f of readdirSync(runPath)) {
      if (f !== RUN_LOCK_FILE) rmSync(join(runPath, f), { recursive: true, force: true });
    }
    return await startRun(config, catalog, options, log, lock);
  } finally {
    lock.release();
  }
}

/**
 * The result a finished run recorded in its summary.json (status `finished`
 * and its final state written), or undefined when the run is not finished.
 */
export function finishedResult(runPath: string): TrainResult | undefined {
  const file = join(runPath, 'summary.json');
  if (!existsSync(file)) return undefined;
  const s = JSON.parse(readFileSync(file, 'utf8')) as SummaryJson;
  if (s.status !== 'finished' || !s.state || !existsSync(s.state)) return undefined;
  return {
    status: 'finished',
    steps: s.steps,
    epochs: s.epochs,
    finalLoss: s.final_loss,
    knn: {
      trained: s.knn.trained,
      ...(s.knn.raw_pixels !== undefined ? { rawPixels: s.knn.raw_pixels } : {}),
      ...(s.knn.random_init !== undefined ? { randomInit: s.knn.random_init } : {}),
    },
    knnPerEpoch: s.knn_per_epoch ?? [],
    imgPerSec: s.img_per_sec,
    wallSeconds: s.wall_seconds,
    peakRssMb: s.peak_rss_mb,
    tensorsAfterStep: [],
    ...(s.alignment !== undefined
      ? { alignment: s.alignment, uniformity: s.uniformity, embeddingStd: s.embedding_std }
      : {}),
  };
}

/** The fields of summary.json (see summaryOf) that finishedResult reads back. */
interface SummaryJson {
  status: string;
  state?: string;
  steps: number;
  epochs: number;
  final_loss: number;
  knn: { trained: number; raw_pixels?: number; random_init?: number };
  knn_per_epoch?: { epoch: number; accuracy: number }[];
  img_per_sec: number;
  wall_seconds: number;
  peak_rss_mb: number;
  alignment?: number;
  uniformity?: number;
  embedding_std?: number;
}

/**
 * Tracking, dataset, session, run folder, then training. `lock` is the run
 * folder's lock when the folder exists already (resumed, fixed); a new folder
 * is locked here, as soon as it is created.
 */
async function startRun(
  config: ExperimentConfig,
  catalog: Catalog,
  options: RunOptions,
  log: (l: string) => void,
  lock: RunLock | undefined,
): Promise<RunOutcome> {
  if (!options.resumeFrom) checkRunRoot(config.tracking.dir);
  // a resumed run keeps the tracking its folder records; tracking.uri overrides, 'off' stops it
  const tracking = chooseTrackingUri({
    configUri: config.tracking.uri,
    envUri: process.env.MLFLOW_TRACKING_URI,
    recorded: options.resumeFrom
      ? recordedTracking(resolve(options.resumeFrom.runPath))
      : undefined,
  });
  if (tracking.message) log(`[tracking] ${tracking.message}`);
  const uri = tracking.uri;
  const experimentName =
    options.mlflow?.experimentName ?? (config.tracking.experiment || config.name);
  if (uri) await probe(uri, experimentName, log);
  const dataset = options.dataset ?? (await loadDataset(config, catalog));
  const session = createSession(config, catalog, {
    dataset,
    ...(options.collectives ? { collectives: options.collectives } : {}),
  });
  let newLock: RunLock | undefined;
  try {
    const resume = options.resumeFrom
      ? openCheckpoint(session, options.resumeFrom, log)
      : undefined;
    const run = openRunFolder(session.config, options);
    if (!lock) newLock = lockRun(run.path);
    warnSkipped(session.dataset, log);
    const local = new LocalRunTracker(run);
    const tracker = uri
      ? new MlflowTracker(local, mlflowOptions(session, run, uri, experimentName, options, log))
      : local;
    if (resume) tracker.setSummary({ resumed_from: resume.path });
    else tracker.logParams(session.config); // a resumed run keeps the config.yaml it started with
    // where it trained, not what it learned: a tag (N workers train what one process with bnSplits N does)
    const workers = session.collectives.worldSize;
    tracker.setTags?.({ 'contrast.workers': String(workers) });
    tracker.setSummary({ workers });
    return await train(session, { tracker, local, runPath: run.path }, options, resume?.bundle);
  } finally {
    newLock?.release();
    session.dispose();
  }
}

/**
 * A data-parallel worker other than rank 0: trains its slice of every batch in
 * step with the group and writes nothing (rank 0 writes the run folder,
 * checkpoints, tracking and evaluation). Resuming, it reads the checkpoint
 * rank 0 wrote (the run folder must be on a file system every worker reads:
 * the same machine, or a shared one), so every worker starts from the same state.
 * @throws StateError when the checkpoint cannot be read; DistributedError when the group fails.
 */
export async function runWorker(
  config: ExperimentConfig,
  catalog: Catalog,
  options: TrainOptions & {
    collectives: Collectives;
    dataset?: TrainingDataset;
    resumeFrom?: { runPath: string; fallback?: boolean };
  },
): Promise<TrainResult> {
  const log = options.log ?? ((l: string) => console.error(l));
  checkNames(config, catalog);
  const dataset = options.dataset ?? (await loadDataset(config, catalog));
  const session = createSession(config, catalog, { dataset, collectives: options.collectives });
  try {
    const resume = options.resumeFrom
      ? loadCheckpoint(checkpointDir(resolve(options.resumeFrom.runPath)), {
          fallback: options.resumeFrom.fallback ?? false,
          warn: log,
        })
      : undefined;
    const trainer = new Trainer(session, new NullTracker());
    return await trainer.run({
      ...options,
      progress: false,
      ...(resume ? { resume: resume.bundle } : {}),
    });
  } finally {
    session.dispose();
  }
}

/** The tracker of a worker that writes nothing. */
class NullTracker implements Tracker {
  readonly name = 'none';
  logParams(): void {}
  logMetrics(): void {}
  setSummary(): void {}
  saveArtifact(): void {}
  async close(): Promise<void> {}
}

/** Refuses bad URIs and credentials before anything exists; an unreachable server only warns. */
async function probe(uri: string, experimentName: string, log: (l: string) => void) {
  const result = await probeTrackingServer(uri, experimentName);
  if (!result.reachable) {
    log(
      `[mlflow] ${result.reason}; the run spools to its folder and uploads when the server answers`,
    );
  }
}

/** Loads the newest usable checkpoint of a run to resume (verified before the folder is touched). */
function openCheckpoint(
  session: TrainingSession,
  from: { runPath: string; fallback?: boolean },
  log: (l: string) => void,
): ReturnType<typeof loadCheckpoint> {
  const runPath = resolve(from.runPath);
  const resume = loadCheckpoint(checkpointDir(runPath), {
    fallback: from.fallback ?? false,
    warn: log,
  });
  const planned = session.totalSteps;
  if (Number(resume.bundle.values.step) >= planned) {
    tf.dispose(Object.values(resume.bundle.tensors));
    throw new StateError(`${runPath} already finished its ${planned} steps; nothing to resume`, {
      hint: 'to train longer, start a new run (the schedule depends on the total length)',
    });
  }
  rewindMetrics(runPath, resume.bundle.values.metricsBytes);
  return resume;
}

function openRunFolder(config: ExperimentConfig, options: RunOptions): RunDirectory {
  if (options.resumeFrom) {
    const path = resolve(options.resumeFrom.runPath);
    return { path, id: basename(path) };
  }
  if (options.runPath) {
    // the fixed folder exists (locked by runInFixedFolder), emptied when not resumed
    const path = resolve(options.runPath);
    mkdirSync(join(path, 'artifacts'), { recursive: true });
    return { path, id: basename(path) };
  }
  return createRunDirectory(config.tracking.dir, config.name);
}

/** Says how a streamed dataset was indexed, and which files loading it skipped. */
function warnSkipped(dataset: TrainingDataset, log: (l: string) => void): void {
  const index = (dataset as { index?: { entries: number; cached: boolean; seconds: number } })
    .index;
  if (index) {
    log(
      `${dataset.name}: ${index.entries} images indexed in ${index.seconds.toFixed(1)} s${index.cached ? ' (cached index)' : ''}; training on ${dataset.train.n}, streamed`,
    );
  }
  const skipped = (dataset as { skipped?: string[] }).skipped ?? [];
  if (skipped.length) {
    log(
      `${dataset.name}: skipped ${skipped.length} unreadable files (first: ${skipped[0]}); data.strict: true refuses them`,
    );
  }
}

function mlflowOptions(
  session: TrainingSession,
  run: RunDirectory,
  uri: string,
  experimentName: string,
  options: RunOptions,
  log: (l: string) => void,
): MlflowTrackerOptions {
  const { config, dataset } = session;
  return {
    uri,
    experimentName,
    runName: run.id,
    warn: log,
    settings: RUN_SETTINGS,
    closeDeadlineMs: config.tracking.uploadWait * 1000,
    intervalMs: config.tracking.uploadEvery * 1000,
    ...(options.mlflow?.parentDir ? { parentDir: options.mlflow.parentDir } : {}),
    ...(options.mlflow?.source ? { source: options.mlflow.source } : {}),
    input: {
      name: dataset.name,
      digest: dataset.digest ?? 'unknown',
      sourceType: 'local',
      source: JSON.stringify({ uri: dataset.source ?? '', split: 'train', n: dataset.train.n }),
      context: 'train',
    },
  };
}

/** Trains, then writes the summary, the final state and the tracker's status. */
async function train(
  session: TrainingSession,
  out: { tracker: Tracker; local: LocalRunTracker; runPath: string },
  options: RunOptions,
  resume: DecodedBundle | undefined,
): Promise<RunOutcome> {
  const { tracker, local, runPath } = out;
  const metricsFile = join(runPath, 'metrics.jsonl');
  try {
    const result = await new Trainer(session, tracker).run({
      ...options,
      ...(resume ? { resume } : {}),
      checkpoint: {
        dir: checkpointDir(runPath),
        every: session.config.checkpoint.every,
        keep: session.config.checkpoint.keep,
        extra: () => {
          local.flush(); // the checkpoint covers exactly the metrics written so far
          return { metricsBytes: existsSync(metricsFile) ? statSync(metricsFile).size : 0 };
        },
      },
    });
    // Results first, so a failure while writing the state below still leaves them in summary.json.
    tracker.setSummary(summaryOf(result));
    const statePath = session.saveState(join(runPath, 'state'), result.steps, result.epochs);
    tracker.setSummary({ state: statePath });
    // the artifact has the run folder's layout: state/final.bin in both places
    tracker.attachFile?.(relative(runPath, statePath), statePath);
    await tracker.close(result.status);
    return { runPath, result };
  } catch (e) {
    tracker.setSummary({ error: (e as Error).message });
    tracker.setTags?.(failureTags(e));
    await tracker.close('failed');
    throw e;
  }
}

/**
 * Why a run failed, as run tags (MLflow has no failure-reason field or tag):
 * `contrast.error` = `<code>: <message>` (with the fix, as the console shows
 * it), `contrast.error_code` = the code alone, to filter on
 * (`tags.contrast.error_code = 'CONTRAST_DIVERGED'`). An error that is not a
 * ContrastError is named by its class.
 */
export function failureTags(e: unknown): Record<string, string> {
  const code = e instanceof ContrastError ? e.code : e instanceof Error ? e.name : 'Error';
  const message = e instanceof Error ? e.message : String(e);
  return { 'contrast.error': `${code}: ${message}`, 'contrast.error_code': code };
}

/** summary.json's fields for a finished or interrupted run. */
export function summaryOf(result: TrainResult): Record<string, unknown> {
  return {
    steps: result.steps,
    epochs: result.epochs,
    final_loss: result.finalLoss,
    knn: {
      raw_pixels: result.knn.rawPixels,
      random_init: result.knn.randomInit,
      trained: result.knn.trained,
    },
    knn_per_epoch: result.knnPerEpoch,
    img_per_sec: result.imgPerSec,
    ...(result.alignment !== undefined
      ? {
          alignment: result.alignment,
          uniformity: result.uniformity,
          embedding_std: result.embeddingStd,
        }
      : {}),
    ...(result.health
      ? {
          health: {
            warnings: result.health.warnings,
            effective_rank: result.health.last?.effectiveRank,
            std_ratio: result.health.last?.stdRatio,
          },
        }
      : {}),
    ...(result.skippedFiles !== undefined ? { skipped_files: result.skippedFiles } : {}),
    wall_seconds: result.wallSeconds,
    peak_rss_mb: result.peakRssMb,
    backend: tf.getBackend(),
    ...(result.lastCheckpoint
      ? {
          checkpoint: {
            path: result.lastCheckpoint.path,
            mb: result.lastCheckpoint.bytes / 2 ** 20,
            write_seconds: result.lastCheckpoint.seconds,
          },
        }
      : {}),
  };
}

/** Fields a resumed run may change: where it is stored, tracked and checkpointed. */
const RESUME_MAY_CHANGE = ['tracking', 'checkpoint', 'data.prefetch'];

/**
 * Refuses to resume a folder that is not a run, or with a recipe that differs
 * from the run's (both as trained: the plugin's loss defaults and the encoder's options filled in).
 */
function checkResumable(runPath: string, config: ExperimentConfig, catalog: Catalog): void {
  const file = requireRunFolder(runPath);
  const asTrained = (c: ExperimentConfig) =>
    resolveLoss(resolveModel(c, catalog), catalog.plugins.get(c.strategy.name), catalog).config;
  const original = asTrained(parseExperiment(parse(readFileSync(file, 'utf8'))));
  const diff = configDiff(original, asTrained(config), RESUME_MAY_CHANGE);
  if (diff.length > 0) {
    throw new ConfigError(
      diff[0]!.field,
      `differs from the run being resumed: ${diff.map((d) => `${d.field} (run: ${d.was}, now: ${d.now})`).join('; ')}`,
      {
        hint: `resume with the run's own config (contrast train --resume ${runPath}), or start a new run`,
      },
    );
  }
}

/** Cuts metrics.jsonl back to what the checkpoint covers; MLflow remembers what it already has. */
function rewindMetrics(runPath: string, bytes: unknown): void {
  const file = join(runPath, 'metrics.jsonl');
  if (typeof bytes !== 'number' || !existsSync(file) || statSync(file).size <= bytes) return;
  if (hasMlflowState(runPath)) MlflowUploader.open(runPath).rewindMetrics(bytes);
  truncateSync(file, bytes);
}

/** The config.yaml of a run folder; refuses a folder that is not a run. */
export function requireRunFolder(runPath: string): string {
  const file = join(runPath, 'config.yaml');
  if (!existsSync(file)) {
    throw new StateError(`${runPath} is not a run folder (no config.yaml)`, {
      hint: 'pass a folder created by contrast train, e.g. runs/<name>-<time>',
    });
  }
  return file;
}
