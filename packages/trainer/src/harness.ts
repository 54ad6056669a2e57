import * as tf from '@tensorflow/tfjs';
import {
  parseExperiment,
  type Catalog,
  type Collectives,
  type Encoder,
  type ExperimentConfig,
  type ExperimentInput,
  type Method,
  type TrainingClock,
  type TrainingDataset,
} from '@contrast/core';
import { disposeBatch, type TwoViewBatch } from '@contrast/data';
import { createSession, type TrainingSession } from './session.js';
import type { StepTensors } from './step.js';

/**
 * A composed experiment stepped one batch at a time, for plugin tests and
 * benchmarks: the same session (composition, method, optimizer, streams) the
 * Trainer uses, without the loop's hooks.
 */
export interface StepHarness {
  config: ExperimentConfig;
  session: TrainingSession;
  encoder: Encoder;
  method: Method;
  /** The step clock schedules read: step() advances it; set `total` for a schedule's length. */
  clock: TrainingClock;
  nextBatch(): TwoViewBatch;
  /** One training step on `batch` at `lr`, as tensors (phases reported to `mark`). */
  stepOn(batch: TwoViewBatch, lr: number, mark?: (phase: string) => void): StepTensors;
  /** One training step on the next batch; returns the loss and the method's metrics. */
  step(lr?: number): { loss: number; metrics: Record<string, number> };
  /** n steps: the losses and tf.memory().numTensors after each (constant when nothing leaks). */
  run(n: number): { losses: number[]; tensorCounts: number[] };
  dispose(): void;
}

export function createStepHarness(
  input: ExperimentInput,
  catalog: Catalog,
  options: {
    dataset?: TrainingDataset;
    /** Data-parallel: this worker's collectives (its slices of each batch, the step's all-reduce). */
    collectives?: Collectives;
  } = {},
): StepHarness {
  const session = createSession(parseExperiment(input), catalog, options);
  const batches = session.batches(Number.MAX_SAFE_INTEGER);
  const { clock } = session;
  let done = 0;
  const harness: StepHarness = {
    config: session.config,
    session,
    encoder: session.encoder,
    method: session.method,
    clock,
    nextBatch: () => batches.next().value as TwoViewBatch,
    stepOn: (batch, lr, mark) => session.step(batch, lr, mark),
    step(lr = session.config.optim.lr) {
      clock.step = done++; // as the trainer does: schedules see the steps completed
      const b = harness.nextBatch();
      const out = session.step(b, lr);
      const metrics: Record<string, number> = {};
      for (const [k, t] of Object.entries(out.metrics)) metrics[k] = t.dataSync()[0]!;
      const result = { loss: out.loss.dataSync()[0]!, metrics };
      tf.dispose([out.loss, ...Object.values(out.metrics)]);
      disposeBatch(b);
      return result;
    },
    run(n) {
      const losses: number[] = [];
      const tensorCounts: number[] = [];
      for (let i = 0; i < n; i++) {
        losses.push(harness.step().loss);
        tensorCounts.push(tf.memory().numTensors);
      }
      return { losses, tensorCounts };
    },
    dispose: () => session.dispose(),
  };
  return harness;
}
