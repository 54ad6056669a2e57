import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { inject, injectable } from 'tsyringe';
import {
  encodeBundle,
  StateError,
  Tokens,
  writeFileAtomic,
  type Encoder,
  type ExperimentConfig,
  type ImageSplit,
  type KeyEncoderPolicy,
  type Loss,
  type NegativeSource,
  type Rng,
  type StateTensors,
  type Tracker,
  type TrainingDataset,
} from '@contrast/core';
import {
  BatchAugmentation,
  disposeBatch,
  prefetch,
  splitBatch,
  stepsPerEpoch,
  TENSORS_PER_BATCH,
  twoViewBatches,
} from '@contrast/data';
import { knnOnEncoder, knnOnPixels, type KnnResult } from '@contrast/eval';
import { Progress } from './progress.js';
import { learningRate, Sgd } from './sgd.js';
import { contrastiveStep } from './step.js';

export interface TrainResult {
  status: 'finished' | 'interrupted';
  steps: number;
  epochs: number;
  finalLoss: number;
  /** kNN top-1 on the test split: raw pixels and random init (when baselines are on), trained. */
  knn: { rawPixels?: number; randomInit?: number; trained: number };
  knnPerEpoch: { epoch: number; accuracy: number }[];
  imgPerSec: number;
  wallSeconds: number;
  peakRssMb: number;
  /** tf.memory().numTensors after each step; constant when nothing leaks. */
  tensorsAfterStep: number[];
}

export interface TrainOptions {
  progress?: boolean;
  /** Polled every step; training stops cleanly when it returns true. */
  shouldStop?: () => boolean;
  log?: (line: string) => void;
}

/** The training loop around the generic step: schedule, logging, kNN, final state. */
@injectable()
export class Trainer {
  readonly optimizer: Sgd;
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
  ) {
    const o = config.optim;
    this.optimizer = new Sgd(encoder.parameters(), o.momentum, o.weightDecay);
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
    const all = this.stepsPerEpoch * this.config.optim.epochs;
    return this.config.optim.maxSteps > 0 ? Math.min(all, this.config.optim.maxSteps) : all;
  }

  private toBatch = (split: ImageSplit, s: number, e: number) =>
    splitBatch(this.dataset, split, s, e);

  knn(encoder: Encoder = this.encoder): KnnResult {
    const { k, t, bankSize, testSize } = this.config.eval.knn;
    return knnOnEncoder(this.dataset, this.toBatch, encoder, { k, t, bankSize, testSize });
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
    if (ev.baselines) {
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
    const batches = twoViewBatches({
      dataset: this.dataset,
      augmentation: this.augmentation,
      rng: this.rng.fork(),
      batchSize: optim.batchSize,
      dropLast: this.config.data.dropLast,
      epochs,
    });
    const parts = {
      encoder: this.encoder,
      keyPolicy: this.keyPolicy,
      source: this.source,
      loss: this.loss,
      optimizer: this.optimizer,
      temperature: this.config.loss.temperature,
    };
    const tensorsAfterStep: number[] = [];
    const knnPerEpoch: TrainResult['knnPerEpoch'] = [];
    let step = 0;
    let lastLoss = Number.NaN;
    let status: TrainResult['status'] = 'finished';
    let imagesTimed = 0;
    let secondsTimed = 0;
    let lastEvalEpoch = -1;
    let tPrev = performance.now();

    const ahead = prefetch(batches, this.config.data.prefetch, disposeBatch);
    for await (const batch of ahead) {
      if (options.shouldStop?.()) {
        disposeBatch(batch);
        status = 'interrupted';
        break;
      }
      const lr = learningRate(optim.schedule, optim.lr, step, total);
      const momentum = this.keyPolicy.currentMomentum; // before the step's EMA update uses it
      const out = contrastiveStep(parts, batch, lr);
      const [loss, accuracy] = [out.loss.dataSync()[0]!, out.accuracy.dataSync()[0]!]; // the logged scalars
      tf.dispose([out.loss, out.accuracy]);
      disposeBatch(batch);
      if (!Number.isFinite(loss)) {
        throw new StateError(`loss became ${loss} at step ${step}`, {
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

      const endOfEpoch = batch.step === spe - 1 || step === total;
      if (
        endOfEpoch &&
        ev.knn.every > 0 &&
        ((batch.epoch + 1) % ev.knn.every === 0 || step === total)
      ) {
        const r = this.knn();
        knnPerEpoch.push({ epoch: batch.epoch + 1, accuracy: r.accuracy });
        lastEvalEpoch = batch.epoch;
        this.tracker.logMetrics({ step, epoch: batch.epoch + 1, knn_accuracy: r.accuracy });
        progress.log(
          `epoch ${batch.epoch + 1}: kNN ${(100 * r.accuracy).toFixed(2)}% (${r.seconds.toFixed(1)} s)`,
        );
        tPrev = performance.now();
      }
      if (step >= total) break;
    }

    const lastEpoch = Math.ceil(step / spe) - 1;
    if (lastEvalEpoch === lastEpoch && knnPerEpoch.length > 0) {
      knnResult.trained = knnPerEpoch[knnPerEpoch.length - 1]!.accuracy;
    } else {
      knnResult.trained = this.knn().accuracy;
      knnPerEpoch.push({ epoch: lastEpoch + 1, accuracy: knnResult.trained });
    }
    return {
      status,
      steps: step,
      epochs: lastEpoch + 1,
      finalLoss: lastLoss,
      knn: knnResult,
      knnPerEpoch,
      imgPerSec: secondsTimed > 0 ? imagesTimed / secondsTimed : Number.NaN,
      wallSeconds: (performance.now() - t0) / 1000,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
      tensorsAfterStep,
    };
  }

  /** Everything trained: encoder (BN statistics too), key encoder, strategy state, optimizer slots. */
  saveState(dir: string, step: number, epoch: number): string {
    mkdirSync(dir, { recursive: true });
    const tensors: Record<string, tf.Tensor> = {};
    const values: Record<string, unknown> = { step, epoch, rng: this.rng.getState() };
    const add = (prefix: string, s: StateTensors) => {
      for (const [k, v] of Object.entries(s.tensors)) tensors[`${prefix}/${k}`] = v;
      values[prefix] = s.values;
    };
    for (const [k, v] of this.encoder.namedVariables()) tensors[`encoder/${k}`] = v;
    add('key_encoder', this.keyPolicy.state());
    add('strategy', this.source.state());
    add('optimizer', this.optimizer.state());
    if (this.loss.state) add('loss', this.loss.state());
    const path = join(dir, 'final.bin');
    writeFileAtomic(path, encodeBundle(tensors, values));
    return path;
  }

  dispose(): void {
    this.optimizer.dispose();
    this.source.dispose();
    this.keyPolicy.dispose();
    this.encoder.dispose();
  }
}
