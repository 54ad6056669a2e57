import * as tf from '@tensorflow/tfjs';
import {
  composeExperiment,
  parseExperiment,
  Tokens,
  type Catalog,
  type Encoder,
  type ExperimentConfig,
  type ExperimentInput,
  type KeyEncoderPolicy,
  type NegativeSource,
  type Rng,
  type TrainingClock,
  type TrainingDataset,
} from '@contrast/core';
import { BatchAugmentation, disposeBatch, twoViewBatches, type TwoViewBatch } from '@contrast/data';
import { createOptimizer } from './sgd.js';
import { contrastiveStep, type StepParts } from './step.js';

/**
 * One composed experiment with its step parts and an endless batch stream, for
 * plugin smoke tests and benchmarks: the same wiring the Trainer uses, one step at a time.
 */
export interface StepHarness {
  config: ExperimentConfig;
  parts: StepParts;
  encoder: Encoder;
  keyPolicy: KeyEncoderPolicy;
  source: NegativeSource;
  nextBatch(): TwoViewBatch;
  /** The step clock schedules read: step() advances it; set `total` for a schedule's length. */
  clock: TrainingClock;
  /** One training step on the next batch; returns the loss and pretext accuracy. */
  step(lr?: number): { loss: number; accuracy: number };
  /** n steps: the losses and tf.memory().numTensors after each (constant when nothing leaks). */
  run(n: number): { losses: number[]; tensorCounts: number[] };
  dispose(): void;
}

export function createStepHarness(
  input: ExperimentInput,
  catalog: Catalog,
  options: { dataset?: TrainingDataset } = {},
): StepHarness {
  const config = parseExperiment(input);
  const { container, dataset } = composeExperiment(config, catalog, options);
  const encoder = container.resolve<Encoder>(Tokens.Encoder);
  const keyPolicy = container.resolve<KeyEncoderPolicy>(Tokens.KeyEncoderPolicy);
  const source = container.resolve<NegativeSource>(Tokens.NegativeSource);
  const rng = container.resolve<Rng>(Tokens.Rng);
  const parts: StepParts = {
    encoder,
    keyPolicy,
    source,
    loss: container.resolve(Tokens.Loss),
    optimizer: createOptimizer(encoder.parameters(), config.optim),
    temperature: config.loss.temperature,
    symmetric: config.loss.symmetric,
  };
  const batches = twoViewBatches({
    dataset,
    augmentation: new BatchAugmentation(config.data.augmentation, dataset, rng.fork()),
    rng: rng.fork(),
    batchSize: config.optim.batchSize,
    dropLast: true,
    epochs: Number.MAX_SAFE_INTEGER,
  });
  const nextBatch = () => batches.next().value as TwoViewBatch;
  const clock = container.resolve(Tokens.Clock);
  let done = 0;
  return {
    config,
    parts,
    encoder,
    keyPolicy,
    source,
    nextBatch,
    clock,
    step(lr = config.optim.lr) {
      clock.step = done++; // as the trainer does: schedules see the steps completed
      const b = nextBatch();
      const out = contrastiveStep(parts, b, lr);
      const result = { loss: out.loss.dataSync()[0]!, accuracy: out.accuracy.dataSync()[0]! };
      tf.dispose([out.loss, out.accuracy]);
      disposeBatch(b);
      return result;
    },
    run(n) {
      const losses: number[] = [];
      const tensorCounts: number[] = [];
      for (let i = 0; i < n; i++) {
        losses.push(this.step().loss);
        tensorCounts.push(tf.memory().numTensors);
      }
      return { losses, tensorCounts };
    },
    dispose() {
      parts.optimizer.dispose();
      source.dispose();
      keyPolicy.dispose();
      encoder.dispose();
    },
  };
}
