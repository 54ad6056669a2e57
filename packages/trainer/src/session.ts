import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { DependencyContainer } from 'tsyringe';
import {
  collectivesOf,
  composeExperiment,
  encodeBundle,
  isStreamed,
  methodParameters,
  resolveViews,
  ContractError,
  StateError,
  Tokens,
  writeFileAtomic,
  type Augmentation,
  type Catalog,
  type Collectives,
  type DecodedBundle,
  type Encoder,
  type ExperimentConfig,
  type Method,
  type Optimizer,
  type Plugin,
  type Rng,
  type StateTensors,
  type TrainingClock,
  type TrainingDataset,
  type Views,
} from '@contrast/core';
import {
  CropGroupsAugmentation,
  checkWorkerBatches,
  disposeBatch,
  prefetch,
  stepsPerEpoch,
  streamBatches,
  twoViewBatches,
  type BatchStream,
  type TwoViewBatch,
} from '@contrast/data';
import { ParameterPlan } from './groups.js';
import { trainStep, type StepTensors } from './step.js';

/** Steps a run takes in all: its epochs over `trainSize` images, capped by optim.maxSteps. */
export function plannedSteps(config: ExperimentConfig, trainSize: number): number {
  const { batchSize, epochs, maxSteps } = config.optim;
  const all = stepsPerEpoch(trainSize, batchSize, config.data.dropLast) * epochs;
  return maxSteps > 0 ? Math.min(all, maxSteps) : all;
}

/**
 * The default augmentation: the crop groups of data.views (without it, two
 * views with data.augmentation's pipeline, the same for both).
 */
export const defaultAugmentation = (
  config: ExperimentConfig,
  dataset: TrainingDataset,
  rng: Rng,
): Augmentation => new CropGroupsAugmentation(resolveViews(config.data), dataset, rng);

/**
 * One composed experiment: the encoder, the method (with its own parts: key
 * encoder, queue, bank, predictor), the optimizer over the method's parameters,
 * the augmentation, the data-order stream and the clock — built once by
 * composeExperiment in its fixed order of random streams (the optimizer draws
 * none), and used alike by the Trainer, the step harness, evaluation and the
 * benchmarks. Reads every part from the composition's container.
 */
export class TrainingSession {
  readonly method: Method;
  readonly optimizer: Optimizer;
  /** The per-group options of the optimizer's parameters (lr scale, decay, frozen, clipping). */
  readonly plan: ParameterPlan;
  readonly augmentation: Augmentation;
  /** The data-order stream (forked after the augmentation's). */
  readonly dataRng: Rng;

  constructor(
    readonly container: DependencyContainer,
    readonly plugin: Plugin,
    readonly config: ExperimentConfig,
    readonly dataset: TrainingDataset,
  ) {
    checkDataParallel(config, dataset.train.n, collectivesOf(container).worldSize);
    this.method = container.resolve(Tokens.Method);
    this.optimizer = container.resolve(Tokens.OptimizerFactory)(methodParameters(this.method));
    const names = this.parameterNames();
    this.plan = new ParameterPlan(
      this.method.parameterGroups(),
      config.optim,
      this.stepsPerEpoch,
      (v) => names.get(v) ?? v.name,
    );
    if (!container.isRegistered(Tokens.Augmentation)) {
      throw new ContractError('the experiment was composed without an augmentation', {
        hint: 'compose it with an augmentation factory (createSession passes the default one)',
      });
    }
    this.augmentation = container.resolve(Tokens.Augmentation);
    this.dataRng = container.resolve(Tokens.DataRng);
  }

  get encoder(): Encoder {
    return this.container.resolve(Tokens.Encoder);
  }

  get rng(): Rng {
    return this.container.resolve(Tokens.Rng);
  }

  get clock(): TrainingClock {
    return this.container.resolve(Tokens.Clock);
  }

  get stepsPerEpoch(): number {
    const { batchSize } = this.config.optim;
    return stepsPerEpoch(this.dataset.train.n, batchSize, this.config.data.dropLast);
  }

  get totalSteps(): number {
    return plannedSteps(this.config, this.dataset.train.n);
  }

  /**
   * One training step on `views` at `lr` (the clock must already say which step
   * this is). Returns the loss and the method's metrics as tensors to read and dispose.
   */
  step(views: Views, lr: number, mark?: (phase: string) => void, stop = false): StepTensors {
    const parts = {
      method: this.method,
      optimizer: this.optimizer,
      plan: this.plan,
      clock: this.clock,
      collectives: this.collectives,
      stop,
    };
    return trainStep(mark ? { ...parts, mark } : parts, views, lr, this.config.optim.lr);
  }

  /** What crosses workers (`singleProcess` unless the run is data-parallel). */
  get collectives(): Collectives {
    return collectivesOf(this.container);
  }

  /**
   * Two-view batches of `epochs` epochs of an in-memory dataset, from the
   * data-order stream as it stands (the step harness draws them one by one).
   * @throws ContractError for a streamed dataset: use batchStream.
   */
  batches(epochs: number, start?: { epoch: number; step: number }): Generator<TwoViewBatch> {
    return twoViewBatches(this.streamOptions(epochs, start));
  }

  /**
   * The batches the trainer consumes: an in-memory dataset's run `data.prefetch`
   * batches ahead (Prefetcher); a streamed dataset's are decoded from disk
   * `data.prefetch` batches ahead (streamedTwoViewBatches). Both draw the same
   * order and augmentations from the same streams. `onSkip` hears of each
   * unreadable file a streamed dataset skips.
   */
  batchStream(
    epochs: number,
    start?: { epoch: number; step: number },
    onSkip?: (file: string, reason: string) => void,
  ): BatchStream {
    const depth = this.config.data.prefetch;
    if (!isStreamed(this.dataset.train))
      return prefetch(this.batches(epochs, start), depth, disposeBatch);
    return streamBatches({
      ...this.streamOptions(epochs, start),
      depth,
      ...(onSkip ? { onSkip } : {}),
    });
  }

  private streamOptions(epochs: number, start?: { epoch: number; step: number }) {
    return {
      dataset: this.dataset,
      augmentation: this.augmentation,
      rng: this.dataRng,
      batchSize: this.config.optim.batchSize,
      dropLast: this.config.data.dropLast,
      epochs,
      ...(this.collectives.worldSize > 1 ? { worker: this.collectives } : {}),
      ...(start ? { startEpoch: start.epoch, startStep: start.step } : {}),
    };
  }

  /**
   * Everything trained, by prefix: `encoder/<name>` (BN statistics too), each of
   * the method's state parts (`key_encoder/`, `strategy/`, `predictor/`, `loss/`...),
   * `optimizer/`; small values (the main random stream) beside them.
   */
  stateBundle(): { tensors: Record<string, tf.Tensor>; values: Record<string, unknown> } {
    const tensors: Record<string, tf.Tensor> = {};
    const values: Record<string, unknown> = { rng: this.rng.getState() };
    const add = (prefix: string, s: StateTensors) => {
      for (const [k, v] of Object.entries(s.tensors)) tensors[`${prefix}/${k}`] = v;
      values[prefix] = s.values;
    };
    for (const [k, v] of this.encoder.namedVariables()) tensors[`encoder/${k}`] = v;
    for (const [part, s] of Object.entries(this.method.state())) add(part, s);
    add('optimizer', this.optimizer.state());
    return { tensors, values };
  }

  /**
   * Restores what stateBundle saved; the bundle's tensors are disposed.
   * @throws StateError when an encoder, method or optimizer entry is missing or mis-shaped.
   */
  loadState(bundle: DecodedBundle): void {
    const { tensors, values } = bundle;
    const part = (prefix: string): StateTensors => {
      const t: Record<string, tf.Tensor> = {};
      for (const [k, v] of Object.entries(tensors)) {
        if (k.startsWith(`${prefix}/`)) t[k.slice(prefix.length + 1)] = v;
      }
      return { tensors: t, values: (values[prefix] ?? {}) as StateTensors['values'] };
    };
    try {
      this.loadEncoder(tensors);
      const parts = Object.keys(this.method.state());
      this.method.loadState(Object.fromEntries(parts.map((p) => [p, part(p)])));
      this.optimizer.loadState(part('optimizer'));
      if (Array.isArray(values.rng)) this.rng.setState(values.rng as number[]);
    } finally {
      tf.dispose(Object.values(tensors));
    }
  }

  /** Writes the final state (stateBundle plus step and epoch) to `<dir>/final.bin`, atomically. */
  saveState(dir: string, step: number, epoch: number): string {
    mkdirSync(dir, { recursive: true });
    const { tensors, values } = this.stateBundle();
    const path = join(dir, 'final.bin');
    writeFileAtomic(path, encodeBundle(tensors, { ...values, step, epoch }));
    return path;
  }

  dispose(): void {
    this.optimizer.dispose();
    this.method.dispose();
    this.encoder.dispose();
  }

  /** Each trained variable's checkpoint name (`encoder/...`, `predictor/...`): what `optim.groups` match. */
  private parameterNames(): Map<tf.Variable, string> {
    const names = new Map<tf.Variable, string>();
    for (const [k, v] of this.encoder.namedVariables()) names.set(v, `encoder/${k}`);
    for (const [part, s] of Object.entries(this.method.state())) {
      for (const [k, t] of Object.entries(s.tensors)) {
        if (t instanceof tf.Variable && !names.has(t)) names.set(t, `${part}/${k}`);
      }
    }
    return names;
  }

  private loadEncoder(tensors: Record<string, tf.Tensor>): void {
    for (const [k, v] of this.encoder.namedVariables()) {
      const t = tensors[`encoder/${k}`];
      if (!t || t.shape.join() !== v.shape.join()) {
        throw new StateError(`checkpoint lacks a matching encoder/${k}`, {
          hint: 'resume with the model config the run was trained with',
        });
      }
      v.assign(t);
    }
  }
}

/**
 * A data-parallel run's batches must split evenly: the global batch, and with
 * data.dropLast false the epoch's last, smaller batch too (checkWorkerBatches).
 * @throws ConfigError (optim.batchSize) naming the batch that does not divide, and the fix.
 */
export function checkDataParallel(
  config: ExperimentConfig,
  trainSize: number,
  worldSize: number,
): void {
  checkWorkerBatches(config.optim.batchSize, worldSize, {
    trainSize,
    dropLast: config.data.dropLast,
  });
}

/**
 * Validates and composes an experiment into a session: names, the plugin's
 * config, the loss, the plugin's checks and the dataset files are all checked
 * before any weights exist.
 */
export function createSession(
  config: ExperimentConfig,
  catalog: Catalog,
  options: {
    dataset?: TrainingDataset;
    parent?: DependencyContainer;
    /** Data-parallel: this worker's collectives (default: one process). */
    collectives?: Collectives;
  } = {},
): TrainingSession {
  const composition = composeExperiment(config, catalog, {
    ...options,
    augmentation: defaultAugmentation,
  });
  return new TrainingSession(
    composition.container,
    composition.plugin,
    composition.config,
    composition.dataset,
  );
}
