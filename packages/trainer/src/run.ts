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
import { checkRunRoot, createRunDirectory, LocalRunTracker } from '@contrast/tracking';
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
  } = {},
): Promise<RunOutcome> {
  checkNames(config, catalog);
  checkRunRoot(config.tracking.dir);
  const { container } = composeExperiment(
    config,
    catalog,
    options.dataset ? { dataset: options.dataset } : {},
  );
  const run = createRunDirectory(config.tracking.dir, config.name);
  const tracker = new LocalRunTracker(run);
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
    tracker.setSummary({
      state: trainer.saveState(join(run.path, 'state'), result.steps, result.epochs),
    });
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
