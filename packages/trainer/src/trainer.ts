import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { inject, injectable } from 'tsyringe';
import {
  DivergedError,
  encodeBundle,
  Rng,
  StateError,
  type DecodedBundle,
  Tokens,
  writeFileAtomic,
  type Encoder,
  type ExperimentConfig,
  type ImageSplit,
  type KeyEncoderPolicy,
  type Loss,
  type NegativeSource,
  type StateTensors,
  type Tracker,
  type TrainingClock,
  type TrainingDataset,
} from '@contrast/core';
import {
  BatchAugmentation,
  disposeBatch,
  gatherPixels,
  prefetch,
  splitBatch,
  stepsPerEpoch,
  TENSORS_PER_BATCH,
  twoViewBatches,
} from '@contrast/data';
import { alignmentUniformity, knnOnEncoder, knnOnPixels, type KnnResult } from '@contrast/eval';
import { writeCheckpoint } from './checkpoint.js';
import { Progress } from './progress.js';
import { createOptimizer, scheduledLr, type Optimizer } from './sgd.js';
import { contrastiveStep } from './step.js';

export interface TrainResult {
  status: 'finished' | 'interrupted';
  steps: number;
  epochs: number;
  finalLoss: number;
  /** kNN top-1 on the test split: raw pixels and random init (when baselines are on), trained. */
  knn: { rawPixels?: number; randomInit?: number; trained: number };
  knnPerEpoch: { epoch: number; accuracy: number }[];
  /** How the kNN numbers were measured (absent when no kNN ran, e.g. stopped early). */
  knnProtocol?: KnnProtocol;
  imgPerSec: number;
  wallSeconds: number;
  peakRssMb: number;
  /** tf.memory().numTensors after each step; constant when nothing leaks. */
  tensorsAfterStep: number[];
  /** The last checkpoint written: path, size and write time. */
  lastCheckpoint?: { path: string; bytes: number; seconds: number };
  /** Wang & Isola's alignment and uniformity of the final embeddings on test images. */
  alignment?: number;
  uniformity?: number;
}

/**
 * The kNN monitor's protocol (InstDisc's weighted kNN): the dataset, k, t, the
 * features, and how much of each split was used: the bank is the first
 * `bankSize` of `bankOf` training images (of the first `trainSubset` when
 * data.trainSubset is set), the test set the first `testSize` of `testOf`.
 */
export interface KnnProtocol {
  dataset: string;
  k: number;
  t: number;
  features: 'pooled backbone';
  bankSize: number;
  bankOf: number;
  testSize: number;
  testOf: number;
  /** data.trainSubset (0 = the whole training split). */
  trainSubset: number;
}

/** Where and how often the loop checkpoints. */
export interface CheckpointOptions {
  dir: string;
  /** Every n steps (0: only at epoch ends and on interrupt). */
  every: number;
  keep: number;
  /** Extra values stored with each checkpoint (e.g. how much of the metrics file it covers). */
  extra?: () => Record<string, unknown>;
}

/** What a checkpoint records besides the tensors, to continue exactly after its step. */
export interface CheckpointValues {
  /** Steps completed. */
  step: number;
  /** Epoch and step-in-epoch of the last completed batch. */
  epoch: number;
  stepInEpoch: number;
  position: { dataRng: number[]; augRng: number[] };
  knnPerEpoch: { epoch: number; accuracy: number }[];
  baselines: { rawPixels?: number; randomInit?: number };
  lastLoss: number;
  lastEvalEpoch: number;
}

export interface TrainOptions {
  progress?: boolean;
  checkpoint?: CheckpointOptions;
  /** A checkpoint (from loadCheckpoint) to continue from. */
  resume?: DecodedBundle;
  /** Polled every step; training stops cleanly when it returns true. */
  shouldStop?: () => boolean;
  log?: (line: string) => void;
}

/** Steps a run takes in all: its epochs over `trainSize` images, capped by optim.maxSteps. */
export function plannedSteps(config: ExperimentConfig, trainSize: number): number {
  const { batchSize, epochs, maxSteps } = config.optim;
  const all = stepsPerEpoch(trainSize, batchSize, config.data.dropLast) * epochs;
  return maxSteps > 0 ? Math.min(all, maxSteps) : all;
}

/** The training loop around the generic step: schedule, logging, kNN, final state. */
@injectable()
export class Trainer {
  readonly optimizer: Optimizer;
  private readonly augmentation: BatchAugmentation;

  constructor(
    @inject(Tokens.Config) readonly config: ExperimentConfig,
    @inject(Tokens.Dataset) readonly dataset: TrainingDataset,
    @inject(Tokens.Encoder) readonly encoder: Encoder,
    @inject(Tokens.KeyEncoderPolicy) readonly keyPolicy: KeyEncoderPolicy,
    @inject(Tokens.NegativeSource) readonly source: NegativeSource,
    @inject(Tokens.Loss) readonly loss: Loss,
    @inject(Tokens.Tracker) readonly tracker: Tracker,
    @inject(Tokens.Rng) readonly rng: Rng,
    @inject(Tokens.Clock) readonly clock: TrainingClock,
  ) {
    const o = config.optim;
    this.optimizer = createOptimizer(encoder.parameters(), o);
    this.augmentation = new BatchAugmentation(config.data.augmentation, dataset, rng.fork());
  }

  get stepsPerEpoch(): number {
    return stepsPerEpoch(
      this.dataset.train.n,
      this.config.optim.batchSize,
      this.config.data.dropLast,
    );
  }

  get totalSteps(): number {
    return plannedSteps(this.config, this.dataset.train.n);
  }

  private toBatch = (split: ImageSplit, s: number, e: number) =>
    splitBatch(this.dataset, split, s, e);

  knn(encoder: Encoder = this.encoder): KnnResult {
    const { k, t, bankSize, testSize } = this.config.eval.knn;
    return knnOnEncoder(this.dataset, this.toBatch, encoder, { k, t, bankSize, testSize });
  }

  /** The protocol a kNN result of this run was measured with. */
  knnProtocol(r: KnnResult): KnnProtocol {
    const { k, t } = this.config.eval.knn;
    return {
      dataset: this.dataset.name,
      k,
      t,
      features: 'pooled backbone',
      bankSize: r.bankSize,
      bankOf: (this.dataset.evalTrain ?? this.dataset.train).n,
      testSize: r.testSize,
      testOf: this.dataset.test.n,
      trainSubset: this.config.data.trainSubset,
    };
  }

  knnPixels(): KnnResult {
    const { k, t, bankSize, testSize } = this.config.eval.knn;
    return knnOnPixels(this.dataset, this.toBatch, { k, t, bankSize, testSize });
  }

  async run(options: TrainOptions = {}): Promise<TrainResult> {
    const log = options.log ?? ((l: string) => console.error(l));
    const { optim, eval: ev } = this.config;
    const t0 = performance.now();
    const knnResult: TrainResult['knn'] = { trained: Number.NaN };
    const resumed = options.resume
      ? (options.resume.values as unknown as CheckpointValues)
      : undefined;
    // fork the data-order stream first: loading a checkpoint then restores the main stream's position
    const dataRng = this.rng.fork();
    if (options.resume) this.loadState(options.resume);
    if (resumed) {
      Object.assign(knnResult, resumed.baselines);
      log(
        `resuming after step ${resumed.step} (epoch ${resumed.epoch + 1}, step ${resumed.stepInEpoch + 1} of the epoch)`,
      );
    } else if (ev.baselines) {
      const px = this.knnPixels();
      knnResult.rawPixels = px.accuracy;
      log(
        `kNN raw pixels: ${(100 * px.accuracy).toFixed(2)}% (${px.bankSize} bank / ${px.testSize} test, ${px.seconds.toFixed(1)} s)`,
      );
      const init = this.knn(); // the encoder is still at its random initialisation
      knnResult.randomInit = init.accuracy;
      log(
        `kNN random-init encoder: ${(100 * init.accuracy).toFixed(2)}% (${init.seconds.toFixed(1)} s)`,
      );
      this.tracker.logMetrics({
        step: 0,
        epoch: 0,
        knn_raw_pixels: px.accuracy,
        knn_random_init: init.accuracy,
      });
    }

    const total = this.totalSteps;
    const spe = this.stepsPerEpoch;
    const epochs = Math.ceil(total / spe);
    const progress = new Progress(
      total,
      this.config.tracking.logEvery,
      process.stderr,
      options.progress ?? true,
    );
    if (resumed) {
      if (resumed.step >= total) {
        throw new StateError(`the run already finished its ${total} steps`, {
          hint: 'to train longer, start a new run (the schedule depends on the total length)',
        });
      }
      dataRng.setState(resumed.position.dataRng);
      this.augmentation.setRngState(resumed.position.augRng);
    }
    const batches = twoViewBatches({
      dataset: this.dataset,
      augmentation: this.augmentation,
      rng: dataRng,
      batchSize: optim.batchSize,
      dropLast: this.config.data.dropLast,
      epochs,
      ...(resumed ? { startEpoch: resumed.epoch, startStep: resumed.stepInEpoch + 1 } : {}),
    });
    const parts = {
      encoder: this.encoder,
      keyPolicy: this.keyPolicy,
      source: this.source,
      loss: this.loss,
      optimizer: this.optimizer,
      temperature: this.config.loss.temperature,
      symmetric: this.config.loss.symmetric,
    };
    const tensorsAfterStep: number[] = [];
    const knnPerEpoch: TrainResult['knnPerEpoch'] = resumed ? [...resumed.knnPerEpoch] : [];
    let step = resumed?.step ?? 0;
    let lastLoss = resumed?.lastLoss ?? Number.NaN;
    let status: TrainResult['status'] = 'finished';
    let imagesTimed = 0;
    let secondsTimed = 0;
    let lastEvalEpoch = resumed?.lastEvalEpoch ?? -1;
    let tPrev = performance.now();
    let last: { epoch: number; step: number; position: CheckpointValues['position'] } | undefined;
    let lastCheckpoint: TrainResult['lastCheckpoint'];
    let checkpointedStep = resumed?.step ?? -1;
    let knnProtocol: KnnProtocol | undefined;
    const checkpoint = () => {
      const ck = options.checkpoint;
      if (!ck || !last || checkpointedStep === step) return;
      const t0 = performance.now();
      const values: CheckpointValues = {
        step,
        epoch: last.epoch,
        stepInEpoch: last.step,
        position: last.position,
        knnPerEpoch,
        baselines: { ...knnResult, trained: undefined } as CheckpointValues['baselines'],
        lastLoss,
        lastEvalEpoch,
      };
      const { tensors, values: stateValues } = this.stateBundle();
      const bytes = encodeBundle(tensors, { ...stateValues, ...values, ...ck.extra?.() });
      const path = writeCheckpoint(ck.dir, step, bytes, ck.keep);
      checkpointedStep = step;
      lastCheckpoint = { path, bytes: bytes.length, seconds: (performance.now() - t0) / 1000 };
    };

    const ahead = prefetch(batches, this.config.data.prefetch, disposeBatch);
    for await (const batch of ahead) {
      if (options.shouldStop?.()) {
        disposeBatch(batch);
        status = 'interrupted';
        checkpoint();
        break;
      }
      const lr = scheduledLr(optim, step, total, spe);
      this.clock.step = step;
      this.clock.total = total;
      const momentum = this.keyPolicy.currentMomentum; // before the step's EMA update uses it
      const out = contrastiveStep(parts, batch, lr);
      const [loss, accuracy] = [out.loss.dataSync()[0]!, out.accuracy.dataSync()[0]!]; // the logged scalars
      tf.dispose([out.loss, out.accuracy]);
      disposeBatch(batch);
      if (!Number.isFinite(loss)) {
        throw new DivergedError(step, loss, {
          hint: 'lower optim.lr or raise loss.temperature',
        });
      }
      const now = performance.now();
      const dt = (now - tPrev) / 1000;
      tPrev = now;
      const n = batch.indices.shape[0];
      if (step % spe >= 2) {
        imagesTimed += n; // skip each epoch's first steps (warm-up, evaluation just before)
        secondsTimed += dt;
      }
      const ips = secondsTimed > 0 ? imagesTimed / secondsTimed : n / dt;
      lastLoss = loss;
      tensorsAfterStep.push(tf.memory().numTensors - TENSORS_PER_BATCH * ahead.buffered); // batches held ahead are not leaks
      this.tracker.logMetrics({
        step,
        epoch: batch.epoch,
        loss,
        lr,
        ...(momentum !== undefined ? { momentum } : {}),
        pretext_accuracy: accuracy,
        img_per_sec: n / dt,
      });
      progress.update({
        step,
        epoch: batch.epoch,
        epochs,
        loss,
        accuracy,
        imgPerSec: ips,
        etaSec: ((total - step - 1) * optim.batchSize) / ips,
      });
      step++;
      last = { epoch: batch.epoch, step: batch.step, position: batch.position };

      const endOfEpoch = batch.step === spe - 1 || step === total;
      if (
        endOfEpoch &&
        ev.knn.every > 0 &&
        ((batch.epoch + 1) % ev.knn.every === 0 || step === total)
      ) {
        const r = this.knn();
        knnProtocol = this.knnProtocol(r);
        knnPerEpoch.push({ epoch: batch.epoch + 1, accuracy: r.accuracy });
        lastEvalEpoch = batch.epoch;
        this.tracker.logMetrics({ step, epoch: batch.epoch + 1, knn_accuracy: r.accuracy });
        progress.log(
          `epoch ${batch.epoch + 1}: kNN ${(100 * r.accuracy).toFixed(2)}% (${r.seconds.toFixed(1)} s)`,
        );
        tPrev = performance.now();
      }
      const every = options.checkpoint?.every ?? 0;
      if (endOfEpoch || (every > 0 && step % every === 0)) {
        checkpoint();
        tPrev = performance.now();
      }
      if (step >= total) break;
    }

    const lastEpoch = Math.ceil(step / spe) - 1;
    if (lastEvalEpoch === lastEpoch && knnPerEpoch.length > 0) {
      knnResult.trained = knnPerEpoch[knnPerEpoch.length - 1]!.accuracy;
    } else if (status === 'finished') {
      const r = this.knn();
      knnProtocol = this.knnProtocol(r);
      knnResult.trained = r.accuracy;
      knnPerEpoch.push({ epoch: lastEpoch + 1, accuracy: knnResult.trained });
    } // a stopped run exits promptly: its encoder is evaluated when it is resumed and finishes
    const au = status === 'finished' ? this.alignUniform() : undefined;
    if (au) this.tracker.logMetrics({ step, epoch: lastEpoch + 1, ...au });
    return {
      ...(au ?? {}),
      status,
      steps: step,
      epochs: lastEpoch + 1,
      finalLoss: lastLoss,
      knn: knnResult,
      knnPerEpoch,
      ...(knnProtocol ? { knnProtocol } : {}),
      imgPerSec: secondsTimed > 0 ? imagesTimed / secondsTimed : Number.NaN,
      wallSeconds: (performance.now() - t0) / 1000,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
      tensorsAfterStep,
      ...(lastCheckpoint ? { lastCheckpoint } : {}),
    };
  }

  /**
   * Alignment / uniformity of the embeddings (eval-mode BN) on the first
   * eval.alignUniform test images, two views each from a fixed-seed augmentation
   * (independent of the training streams).
   */
  alignUniform(): { alignment: number; uniformity: number } | undefined {
    const n = Math.min(this.config.eval.alignUniform, this.dataset.test.n);
    if (n < 2) return undefined;
    const aug = new BatchAugmentation(
      this.config.data.augmentation,
      this.dataset,
      new Rng(this.config.seed + 7919),
    );
    const views = { a: [] as tf.Tensor2D[], b: [] as tf.Tensor2D[] };
    for (let s = 0; s < n; s += 250) {
      const idx = Array.from({ length: Math.min(250, n - s) }, (_, i) => s + i);
      tf.tidy(() => {
        const x = gatherPixels(this.dataset.test, idx, this.dataset);
        views.a.push(tf.keep(this.encoder.embed(aug.apply(x), false)));
        views.b.push(tf.keep(this.encoder.embed(aug.apply(x), false)));
      });
    }
    const a = tf.concat(views.a, 0) as tf.Tensor2D;
    const b = tf.concat(views.b, 0) as tf.Tensor2D;
    const r = alignmentUniformity({ a, b });
    tf.dispose([a, b, ...views.a, ...views.b]);
    return r;
  }

  /** Everything trained: encoder (BN statistics too), key encoder, strategy state, optimizer slots. */
  stateBundle(): { tensors: Record<string, tf.Tensor>; values: Record<string, unknown> } {
    const tensors: Record<string, tf.Tensor> = {};
    const values: Record<string, unknown> = { rng: this.rng.getState() };
    const add = (prefix: string, s: StateTensors) => {
      for (const [k, v] of Object.entries(s.tensors)) tensors[`${prefix}/${k}`] = v;
      values[prefix] = s.values;
    };
    for (const [k, v] of this.encoder.namedVariables()) tensors[`encoder/${k}`] = v;
    add('key_encoder', this.keyPolicy.state());
    add('strategy', this.source.state());
    add('optimizer', this.optimizer.state());
    if (this.loss.state) add('loss', this.loss.state());
    return { tensors, values };
  }

  /** Restores what stateBundle saved; the bundle's tensors are disposed. */
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
      for (const [k, v] of this.encoder.namedVariables()) {
        const t = tensors[`encoder/${k}`];
        if (!t || t.shape.join() !== v.shape.join()) {
          throw new StateError(`checkpoint lacks a matching encoder/${k}`, {
            hint: 'resume with the model config the run was trained with',
          });
        }
        v.assign(t);
      }
      this.keyPolicy.loadState(part('key_encoder'));
      this.source.loadState(part('strategy'));
      this.optimizer.loadState(part('optimizer'));
      if (this.loss.loadState) this.loss.loadState(part('loss'));
      if (Array.isArray(values.rng)) this.rng.setState(values.rng as number[]);
    } finally {
      tf.dispose(Object.values(tensors));
    }
  }

  saveState(dir: string, step: number, epoch: number): string {
    mkdirSync(dir, { recursive: true });
    const { tensors, values } = this.stateBundle();
    const path = join(dir, 'final.bin');
    writeFileAtomic(path, encodeBundle(tensors, { ...values, step, epoch }));
    return path;
  }

  dispose(): void {
    this.optimizer.dispose();
    this.source.dispose();
    this.keyPolicy.dispose();
    this.encoder.dispose();
  }
}
