import 'reflect-metadata';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@contrast/backend';
import { AugmentationSchema, parseExperiment, Rng } from '@contrast/core';
import {
  BatchAugmentation,
  decodeImage,
  disposeBatch,
  openImageFolder,
  streamBatches,
  type TwoViewBatch,
} from '@contrast/data';
import { momentumQueuePlugin } from '@contrast/plugin-momentum-queue';
import { createCatalog, createSession } from '@contrast/trainer';
import { median } from './spec.js';
import { benchExperiment } from './worker.js';

/** One measurement of the data benchmark, run in its own process. */
export interface DataSpec {
  mode: 'startup' | 'decode' | 'train';
  /** The image folder. */
  root: string;
  /** Side images are decoded to. */
  size: number;
  batch: number;
  /** Timed batches or steps. */
  steps: number;
}

const rssMb = () => process.resourceUsage().maxRSS / 1024;

/** Opening the dataset: index (built or cached), held-out images decoded, statistics. */
export async function startup(spec: DataSpec) {
  const t0 = performance.now();
  const ds = await openImageFolder({ root: spec.root, size: spec.size });
  return {
    seconds: (performance.now() - t0) / 1000,
    indexSeconds: ds.index.seconds,
    cached: ds.index.cached,
    entries: ds.index.entries,
    peakRssMb: rssMb(),
  };
}

/**
 * The decode pipeline's own speed: libvips decoding alone (a batch's files
 * submitted at once, as the stream does), then the whole stream (decode,
 * pixel gather, two augmented views) with no training step.
 */
export async function decodeRate(spec: DataSpec) {
  await initBackend('tensorflow'); // the augmentation runs on the backend the training uses
  const ds = await openImageFolder({ root: spec.root, size: spec.size });
  const files = Array.from({ length: spec.batch * spec.steps }, (_, i) =>
    ds.train.file((i * 7919) % ds.train.n),
  );
  await Promise.all(files.slice(0, spec.batch).map((f) => decodeImage(f, spec.size))); // warm-up
  let t0 = performance.now();
  for (let s = 0; s < files.length; s += spec.batch) {
    await Promise.all(files.slice(s, s + spec.batch).map((f) => decodeImage(f, spec.size)));
  }
  const decodeImgPerSec = files.length / ((performance.now() - t0) / 1000);
  const augmentation = new BatchAugmentation(AugmentationSchema.parse({}), ds, new Rng(1));
  const stream = streamBatches({
    dataset: ds,
    augmentation,
    rng: new Rng(2),
    batchSize: spec.batch,
    dropLast: true,
    epochs: 1,
    depth: 2,
  });
  let n = 0;
  t0 = performance.now();
  for await (const b of stream) {
    if (n === 0)
      t0 = performance.now(); // the first batch waits for a cold queue
    else if (n > spec.steps) break;
    disposeBatch(b);
    n++;
  }
  const pipelineImgPerSec = (spec.batch * spec.steps) / ((performance.now() - t0) / 1000);
  return {
    decodeImgPerSec,
    pipelineImgPerSec,
    threads: process.env.UV_THREADPOOL_SIZE ?? '4 (libuv default)',
  };
}

/**
 * Training throughput with streaming decode against the step alone, ResNet-18
 * (CIFAR stem) MoCo at size x size, alternated A B A: the step on a batch made
 * beforehand, then steps that take their batch from the stream (waiting for
 * decode when it is behind, and augmenting), then the step alone again.
 */
export async function trainRate(spec: DataSpec) {
  await initBackend('tensorflow');
  const dataset = await openImageFolder({ root: spec.root, size: spec.size });
  const row = {
    mode: 'moco',
    height: spec.size,
    width: spec.size,
    channels: 3,
    batch: spec.batch,
    queue: 4096,
    warmup: 0,
    steps: 0,
  } as const;
  const config = parseExperiment({
    ...benchExperiment(row),
    data: {
      ...benchExperiment(row).data,
      dataset: 'image-folder',
      root: spec.root,
      imageSize: spec.size,
    },
  });
  const session = createSession(config, createCatalog([momentumQueuePlugin()]), { dataset });
  const it = session.batchStream(Number.MAX_SAFE_INTEGER)[Symbol.asyncIterator]();
  const next = async () => (await it.next()).value as TwoViewBatch;
  const step = (b: TwoViewBatch) => {
    const out = session.step(b, config.optim.lr);
    out.loss.dataSync();
    tf.dispose([out.loss, ...Object.values(out.metrics)]);
  };
  const fixed = await next();
  for (let i = 0; i < 2; i++) step(fixed); // warm-up
  const alone = (k: number) =>
    Array.from({ length: k }, () => {
      const t0 = performance.now();
      step(fixed);
      return (performance.now() - t0) / 1000;
    });
  const a1 = alone(spec.steps);
  const streamed: number[] = [];
  for (let i = 0; i < spec.steps + 3; i++) {
    const t0 = performance.now();
    const b = await next();
    step(b);
    disposeBatch(b);
    if (i >= 3) streamed.push((performance.now() - t0) / 1000); // after the queue filled while A ran
  }
  const a2 = alone(spec.steps);
  disposeBatch(fixed);
  await it.return?.();
  session.dispose();
  const stepAlone = spec.batch / median([...a1, ...a2]);
  const withStream = spec.batch / median(streamed);
  return {
    stepAloneImgPerSec: stepAlone,
    streamingImgPerSec: withStream,
    ratio: withStream / stepAlone,
    stepSeconds: [...a1, ...a2],
    streamedSeconds: streamed,
    peakRssMb: rssMb(),
  };
}

export async function runDataSpec(spec: DataSpec) {
  if (spec.mode === 'startup') return startup(spec);
  if (spec.mode === 'decode') return decodeRate(spec);
  return trainRate(spec);
}
