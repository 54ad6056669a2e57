import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { DependencyContainer } from 'tsyringe';
import {
  checkNames,
  composeExperiment,
  Tokens,
  type Catalog,
  type ExperimentConfig,
  type TrainingDataset,
} from '@contrast/core';
import {
  checkRunRoot,
  createRunDirectory,
  LocalRunTracker,
  MlflowTracker,
  probeTrackingServer,
} from '@contrast/tracking';
import { Trainer, type TrainOptions, type TrainResult } from './trainer.js';

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
  } = {},
): Promise<RunOutcome> {
  const log = options.log ?? ((l: string) => console.error(l));
  checkNames(config, catalog);
  checkRunRoot(config.tracking.dir);
  const uri = config.tracking.uri || process.env.MLFLOW_TRACKING_URI || '';
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
  const run = createRunDirectory(config.tracking.dir, config.name);
  const local = new LocalRunTracker(run);
  const dataset = container.resolve<TrainingDataset>(Tokens.Dataset);
  const tracker = uri
    ? new MlflowTracker(local, {
        uri,
        experimentName,
        runName: run.id,
        warn: log,
        closeDeadlineMs: config.tracking.uploadWait * 1000,
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
  tracker.logParams(config);
  const trainer = container.resolve(Trainer);
  try {
    const result = await trainer.run(options);
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
      wall_seconds: result.wallSeconds,
      peak_rss_mb: result.peakRssMb,
      backend: tf.getBackend(),
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
