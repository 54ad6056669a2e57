import 'reflect-metadata';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@contrast/backend';
import { ContrastiveMethod, InfoNceLoss, type TrainingDataset } from '@contrast/core';
import { disposeBatch, loadFashionMnist, type TwoViewBatch } from '@contrast/data';
import { momentumQueuePlugin } from '@contrast/plugin-momentum-queue';
import {
  createCatalog,
  createOptimizer,
  createStepHarness,
  type StepHarness,
} from '@contrast/trainer';
import { median, type RowResult, type RowSpec } from './spec.js';

/**
 * Images of the row's shape: Fashion-MNIST's real files for 28x28x1, otherwise
 * fixed pseudo-random pixels (the step's cost does not depend on the content).
 */
export function benchDataset(spec: RowSpec, n = 4096): TrainingDataset {
  if (spec.height === 28 && spec.width === 28 && spec.channels === 1) return loadFashionMnist();
  const px = spec.height * spec.width * spec.channels;
  const images = new Uint8Array(n * px);
  let s = 12345;
  for (let i = 0; i < images.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    images[i] = s >>> 24;
  }
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  const split = { images, labels, n };
  return {
    name: `synthetic-${spec.height}x${spec.width}x${spec.channels}`,
    height: spec.height,
    width: spec.width,
    channels: spec.channels,
    numClasses: 10,
    mean: Array<number>(spec.channels).fill(0.5),
    std: Array<number>(spec.channels).fill(0.29),
    providesIndices: true,
    train: split,
    test: split,
  };
}

/** The MoCo CIFAR demo's step (plain BN): ResNet-18 CIFAR stem, fc -> 128, m 0.99, tau 0.1, SGD. */
export function benchExperiment(spec: RowSpec, width = 1) {
  const color = spec.channels === 3;
  return {
    name: 'bench',
    seed: 0,
    data: {
      dataset: 'fashion-mnist',
      augmentation: {
        crop: { scale: [0.08, 1.0] as [number, number] },
        flip: 0.5,
        jitter: color
          ? { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1, p: 0.8 }
          : { brightness: 0.4, contrast: 0.4, p: 0.8 },
        ...(color ? { grayscale: 0.2 } : {}),
      },
    },
    model: {
      encoder: 'resnet18',
      stem: 'cifar' as const,
      width,
      dim: 128,
      head: 'linear' as const,
    },
    strategy: { name: 'momentum-queue', queueSize: spec.queue ?? 4096, momentum: 0.99 },
    loss: { temperature: 0.1 },
    optim: { batchSize: spec.batch, lr: 0.06, momentum: 0.9, weightDecay: 5e-4, epochs: 1 },
    eval: { knn: { every: 0 }, baselines: false },
  };
}

function matmulGflops(): number {
  const n = 2048;
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  tf.matMul(a, b).dispose();
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) tf.matMul(a, b).dispose();
  const s = (performance.now() - t0) / 1000;
  tf.dispose([a, b]);
  return (5 * 2 * n ** 3) / s / 1e9;
}

type BenchStep = (b: TwoViewBatch, mark?: (p: string) => void) => void;

/** The timed step: MoCo's whole step, or the raw encoder step (forward, a linear loss, backward, SGD). */
function benchStep(spec: RowSpec, h: StepHarness): BenchStep {
  const { encoder } = h;
  const lr = h.config.optim.lr;
  if (spec.mode === 'moco') {
    return (b, mark) => {
      const out = h.stepOn(b, lr, mark);
      out.loss.dataSync();
      tf.dispose([out.loss, ...Object.values(out.metrics)]);
    };
  }
  const optimizer = createOptimizer(encoder.parameters(), h.config.optim);
  const target = tf.tidy(() => tf.randomNormal([h.config.model.dim, 1], 0, 1, 'float32', 1));
  return (b, mark) => {
    const loss = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => {
        const z = encoder.embed(b.x1, true);
        mark?.('query_forward');
        return tf.mean(tf.matMul(z, target)) as tf.Scalar;
      }, encoder.parameters());
      mark?.('backward');
      const wd = h.config.optim.weightDecay;
      optimizer.apply(
        grads,
        encoder.parameters().map(() => ({ lr, weightDecay: wd })),
      );
      mark?.('optimizer');
      return value;
    });
    loss.dataSync();
    loss.dispose();
  };
}

/**
 * Timed steps, alternating: the step alone on a batch made beforehand, then a
 * step as the trainer runs it (draw and augment its batch first), so that drift
 * of the machine's speed affects both the same way.
 */
function timeSteps(spec: RowSpec, h: StepHarness, step: BenchStep, batches: TwoViewBatch[]) {
  const stepSeconds: number[] = [];
  const trainTimes: number[] = [];
  const tensorsAfterStep: number[] = [];
  for (let i = 0; i < spec.warmup; i++) step(batches[i % batches.length]!);
  for (let i = 0; i < spec.steps; i++) {
    let t0 = performance.now();
    step(batches[i % batches.length]!);
    stepSeconds.push((performance.now() - t0) / 1000);
    tensorsAfterStep.push(tf.memory().numTensors);
    t0 = performance.now();
    const b = h.nextBatch();
    step(b);
    disposeBatch(b);
    trainTimes.push((performance.now() - t0) / 1000);
  }
  return { stepSeconds, trainTimes, tensorsAfterStep };
}

/** The step's phases (seconds), averaged over two profiled steps. */
function phaseBreakdown(step: BenchStep, batches: TwoViewBatch[]): Record<string, number> {
  const breakdown: Record<string, number> = {};
  for (let i = 0; i < 2; i++) {
    let t = performance.now();
    step(batches[i]!, (phase) => {
      const now = performance.now();
      breakdown[phase] = (breakdown[phase] ?? 0) + (now - t) / 2000;
      t = now;
    });
  }
  return breakdown;
}

/** InfoNCE logits + loss, forward and backward alone (what MoCo adds besides the key encoder), seconds. */
function logitsSecondsOf(h: StepHarness, batch: TwoViewBatch): number {
  const loss = new InfoNceLoss();
  const { keyEncoder, source } = (h.method as ContrastiveMethod).parts;
  const q = tf.variable(tf.tidy(() => keyEncoder.encode(batch.x1)!));
  const k = tf.tidy(() => keyEncoder.encode(batch.x2)!);
  const time = () => {
    const t0 = performance.now();
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => {
        const keys = source.keys({
          query: q,
          key: k,
          indices: batch.indices,
          indexArray: batch.indexArray,
        });
        return loss.compute({ query: q, ...keys, temperature: 0.1 }).loss;
      }, [q]);
      grads[q.name]!.dataSync();
    });
    return (performance.now() - t0) / 1000;
  };
  time();
  const seconds = median([time(), time(), time()]);
  tf.dispose([q, k]);
  return seconds;
}

/** The augmentation pipeline alone: pixel gather + two augmented views per image, seconds per batch. */
function augmentationTimes(h: StepHarness): number[] {
  const augTimes: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const b = h.nextBatch();
    b.x1.dataSync();
    augTimes.push((performance.now() - t0) / 1000);
    disposeBatch(b);
  }
  return augTimes;
}

/** Runs one row of ours and returns its measurements. */
export async function runRow(spec: RowSpec): Promise<RowResult> {
  const info = await initBackend(spec.device === 'gpu' ? 'tensorflow-gpu' : 'tensorflow');
  const dataset = benchDataset(spec);
  const h = createStepHarness(benchExperiment(spec), createCatalog([momentumQueuePlugin()]), {
    dataset,
  });
  const batches: TwoViewBatch[] = [h.nextBatch(), h.nextBatch()];
  const step = benchStep(spec, h);
  const { stepSeconds, trainTimes, tensorsAfterStep } = timeSteps(spec, h, step, batches);
  const breakdown = phaseBreakdown(step, batches);
  const logitsSeconds = spec.mode === 'moco' ? logitsSecondsOf(h, batches[0]!) : undefined;
  const augTimes = augmentationTimes(h);
  const matmul = matmulGflops();
  batches.forEach(disposeBatch);
  h.dispose();
  return {
    framework: `tfjs-node ${tf.version.tfjs} (${info.name})`,
    stepSeconds,
    imgPerSec: spec.batch / median(stepSeconds),
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    matmulGflops: matmul,
    breakdown,
    tensorsAfterStep,
    augImgPerSec: spec.batch / median(augTimes),
    trainImgPerSec: spec.batch / median(trainTimes),
    ...(logitsSeconds !== undefined ? { logitsSeconds } : {}),
  };
}

/** The leak check: 200 steps as the trainer runs them (small ResNet-18), tensors after each. */
export async function leakCheck(
  steps = 200,
  device?: 'gpu',
): Promise<{ steps: number; tensors: number[] }> {
  await initBackend(device === 'gpu' ? 'tensorflow-gpu' : 'tensorflow');
  const spec: RowSpec = {
    mode: 'moco',
    height: 28,
    width: 28,
    channels: 1,
    batch: 32,
    queue: 4096,
    warmup: 0,
    steps,
  };
  const h = createStepHarness(
    benchExperiment(spec, 0.125),
    createCatalog([momentumQueuePlugin()]),
    { dataset: benchDataset(spec) },
  );
  const { tensorCounts } = h.run(steps);
  h.dispose();
  return { steps, tensors: tensorCounts };
}
