import { existsSync, readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parse } from 'yaml';
import * as tf from '@tensorflow/tfjs';
import type { DependencyContainer } from 'tsyringe';
import {
  checkNames,
  composeExperiment,
  ConfigError,
  configDiff,
  parseExperiment,
  StateError,
  Tokens,
  type Catalog,
  type ExperimentConfig,
  type TrainingDataset,
} from '@contrast/core';
import {
  checkRunRoot,
  chooseTrackingUri,
  createRunDirectory,
  createRunDirectoryAt,
  hasMlflowState,
  LocalRunTracker,
  MlflowTracker,
  MlflowUploader,
  probeTrackingServer,
  recordedTracking,
} from '@contrast/tracking';
import { checkpointDir, listCheckpoints, loadCheckpoint } from './checkpoint.js';
import { plannedSteps, Trainer, type TrainOptions, type TrainResult } from './trainer.js';

export interface RunOutcome {
  runPath: string;
  result: TrainResult;
}

/**
 * Validate -> compose -> create the run -> train -> summarise. Everything that
 * can be refused (names, plugin config, dataset files, run folder) is checked
 * before the run directory exists, so bad input leaves no half-written run.
 */
export async function runExperiment(
  config: ExperimentConfig,
  catalog: Catalog,
  options: TrainOptions & {
    dataset?: TrainingDataset;
    onComposed?: (c: DependencyContainer) => void;
    /** MLflow: experiment name override, parent study folder, and what started the run. */
    mlflow?: { experimentName?: string; parentDir?: string; source?: string };
    /** Continue this run folder from its newest usable checkpoint. */
    resumeFrom?: { runPath: string; fallback?: boolean };
    /**
     * A fixed run folder (distributed studies): created when absent, resumed
     * from its last checkpoint when a previous attempt left one.
     */
    runPath?: string;
  } = {},
): Promise<RunOutcome> {
  const log = options.log ?? ((l: string) => console.error(l));
  if (options.runPath && !options.resumeFrom) {
    if (listCheckpoints(checkpointDir(options.runPath)).length > 0) {
      log(`${options.runPath} has checkpoints from an earlier attempt: resuming`);
      return runExperiment(config, catalog, {
        ...options,
        resumeFrom: { runPath: options.runPath, fallback: true },
      });
    }
    // an attempt that died before its first checkpoint: start that folder again
    if (existsSync(options.runPath)) rmSync(options.runPath, { recursive: true, force: true });
  }
  checkNames(config, catalog);
  if (options.resumeFrom) checkResumable(options.resumeFrom.runPath, config);
  else checkRunRoot(config.tracking.dir);
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
  if (uri) {
    // refuses bad URIs and credentials before anything exists; an unreachable server only warns
    const probe = await probeTrackingServer(uri, experimentName);
    if (!probe.reachable) {
      log(
        `[mlflow] ${probe.reason}; the run spools to its folder and uploads when the server answers`,
      );
    }
  }
  const { container } = composeExperiment(
    config,
    catalog,
    options.dataset ? { dataset: options.dataset } : {},
  );
  let resume: ReturnType<typeof loadCheckpoint> | undefined;
  if (options.resumeFrom) {
    // verify the checkpoint before touching the run folder
    const runPath = resolve(options.resumeFrom.runPath);
    resume = loadCheckpoint(checkpointDir(runPath), {
      fallback: options.resumeFrom.fallback ?? false,
      warn: log,
    });
    const planned = plannedSteps(
      config,
      container.resolve<TrainingDataset>(Tokens.Dataset).train.n,
    );
    if (Number(resume.bundle.values.step) >= planned) {
      tf.dispose(Object.values(resume.bundle.tensors));
      throw new StateError(`${runPath} already finished its ${planned} steps; nothing to resume`, {
        hint: 'to train longer, start a new run (the schedule depends on the total length)',
      });
    }
    rewindMetrics(runPath, resume.bundle.values.metricsBytes);
  }
  const run = options.resumeFrom
    ? {
        path: resolve(options.resumeFrom.runPath),
        id: basename(resolve(options.resumeFrom.runPath)),
      }
    : options.runPath
      ? createRunDirectoryAt(options.runPath)
      : createRunDirectory(config.tracking.dir, config.name);
  const local = new LocalRunTracker(run);
  const dataset = container.resolve<TrainingDataset>(Tokens.Dataset);
  const skipped = (dataset as { skipped?: string[] }).skipped ?? [];
  if (skipped.length) {
    log(
      `${dataset.name}: skipped ${skipped.length} unreadable files (first: ${skipped[0]}); data.strict: true refuses them`,
    );
  }
  const tracker = uri
    ? new MlflowTracker(local, {
        uri,
        experimentName,
        runName: run.id,
        warn: log,
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
      })
    : local;
  container.register(Tokens.Tracker, { useValue: tracker });
  options.onComposed?.(container);
  if (resume) tracker.setSummary({ resumed_from: resume.path });
  else tracker.logParams(config); // a resumed run keeps the config.yaml it started with
  const trainer = container.resolve(Trainer);
  const metricsFile = join(run.path, 'metrics.jsonl');
  try {
    const result = await trainer.run({
      ...options,
      ...(resume ? { resume: resume.bundle } : {}),
      checkpoint: {
        dir: checkpointDir(run.path),
        every: config.checkpoint.every,
        keep: config.checkpoint.keep,
        extra: () => {
          local.flush(); // the checkpoint covers exactly the metrics written so far
          return { metricsBytes: existsSync(metricsFile) ? statSync(metricsFile).size : 0 };
        },
      },
    });
    // Results first, so a failure while writing the state below still leaves them in summary.json.
    tracker.setSummary({
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
        ? { alignment: result.alignment, uniformity: result.uniformity }
        : {}),
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
    });
    const statePath = trainer.saveState(join(run.path, 'state'), result.steps, result.epochs);
    tracker.setSummary({ state: statePath });
    tracker.attachFile?.('checkpoints/final.bin', statePath);
    await tracker.close(result.status);
    return { runPath: run.path, result };
  } catch (e) {
    tracker.setSummary({ error: (e as Error).message });
    await tracker.close('failed');
    throw e;
  } finally {
    trainer.dispose();
  }
}

/** Fields a resumed run may change: where it is stored, tracked and checkpointed. */
const RESUME_MAY_CHANGE = ['tracking', 'checkpoint', 'data.prefetch'];

/** Refuses to resume a folder that is not a run, or with a recipe that differs from the run's. */
function checkResumable(runPath: string, config: ExperimentConfig): void {
  const file = requireRunFolder(runPath);
  const original = parseExperiment(parse(readFileSync(file, 'utf8')));
  const diff = configDiff(original, config, RESUME_MAY_CHANGE);
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
