import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { parseExperiment, resolveViews, Rng, type InMemoryDataset } from '@contrast/core';
import { BatchAugmentation, CropGroupsAugmentation } from './augment.js';
import {
  batchPlans,
  disposeBatch,
  gatherPixels,
  tensorsPerBatch,
  twoViewBatches,
} from './batches.js';
import { solarizeBatch } from './transforms.js';

const n = 24;
/** 24 grey 28x28 images with texture (so that crops, jitter and blur change pixels). */
const ds: InMemoryDataset = {
  name: 'toy',
  height: 28,
  width: 28,
  channels: 1,
  numClasses: 1,
  mean: [0.5],
  std: [0.25],
  providesIndices: true,
  train: {
    images: new Uint8Array(n * 784).map((_, i) => (i * 37 + (i >> 5) * 11) % 256),
    labels: new Uint8Array(n),
    n,
  },
  test: { images: new Uint8Array(0), labels: new Uint8Array(0), n: 0 },
};

const dataOf = (data: Record<string, unknown>) =>
  parseExperiment({ name: 'v', strategy: { name: 'x' }, data }).data;

/** MoCo v2-like augmentation: every random transform on, so every draw shows. */
const strong = {
  jitter: { brightness: 0.4, contrast: 0.4, p: 0.8 },
  blur: { p: 0.5 },
};

const multiCrop = dataOf({
  augmentation: strong,
  views: [
    {
      name: 'global',
      count: 2,
      crop: { scale: [0.4, 1] },
      perCrop: [{ blur: { p: 1 } }, { blur: { p: 0.1 }, solarize: 0.2 }],
    },
    { name: 'local', count: 4, crop: { size: 12, scale: [0.05, 0.4] }, blur: { p: 0.5 } },
  ],
});

const host = (t: tf.Tensor) => Array.from(t.dataSync());

describe('crop groups', () => {
  it('the default (no data.views) draws what two calls of the one pipeline drew, bit for bit', () => {
    const data = dataOf({ augmentation: strong });
    const options = { dataset: ds, batchSize: 8, dropLast: true, epochs: 2 };
    const augmentation = new CropGroupsAugmentation(resolveViews(data), ds, new Rng(3));
    const batches = [...twoViewBatches({ ...options, augmentation, rng: new Rng(4) })];
    // the two-view path as it was: view 0 then view 1 of one BatchAugmentation on one stream
    const reference = new BatchAugmentation(data.augmentation, ds, new Rng(3));
    const plans = [...batchPlans(n, { ...options, rng: new Rng(4) })];
    expect(batches).toHaveLength(6);
    batches.forEach((b, i) => {
      const x = gatherPixels(ds.train, plans[i]!.indices, ds);
      const [x1, x2] = [reference.view(x, 0), reference.view(x, 1)];
      expect(b.crops).toHaveLength(2);
      expect(host(b.x1)).toEqual(host(x1));
      expect(host(b.x2)).toEqual(host(x2));
      expect(b.position.augRng).toEqual(reference.rngState());
      expect(b.groups).toEqual([{ name: 'global', start: 0, count: 2, size: [28, 28] }]);
      tf.dispose([x, x1, x2]);
      disposeBatch(b);
    });
  });

  it("draws crop i with its group's pipeline (and perCrop overrides), crops in order from one stream", () => {
    const augmentation = new CropGroupsAugmentation(resolveViews(multiCrop), ds, new Rng(5));
    expect(augmentation.groups).toEqual([
      { name: 'global', start: 0, count: 2, size: [28, 28] },
      { name: 'local', start: 2, count: 4, size: [12, 12] },
    ]);
    expect(tensorsPerBatch(augmentation)).toBe(7);
    const [b] = [
      ...twoViewBatches({
        dataset: ds,
        augmentation,
        rng: new Rng(6),
        batchSize: 8,
        dropLast: true,
        epochs: 1,
      }),
    ];
    expect(b!.crops.map((c) => c.shape)).toEqual([
      [8, 28, 28, 1],
      [8, 28, 28, 1],
      [8, 12, 12, 1],
      [8, 12, 12, 1],
      [8, 12, 12, 1],
      [8, 12, 12, 1],
    ]);
    // the same draws from hand-built pipelines sharing one stream, in crop order
    const rng = new Rng(5);
    const pipeline = (over: Record<string, unknown>) =>
      new BatchAugmentation(dataOf({ augmentation: { ...strong, ...over } }).augmentation, ds, rng);
    const refs = [
      pipeline({ crop: { scale: [0.4, 1] }, blur: { p: 1 } }),
      pipeline({ crop: { scale: [0.4, 1] }, blur: { p: 0.1 }, solarize: 0.2 }),
      ...[0, 1, 2, 3].map(() =>
        pipeline({ crop: { size: 12, scale: [0.05, 0.4] }, blur: { p: 0.5 } }),
      ),
    ];
    const x = gatherPixels(ds.train, b!.indexArray, ds);
    refs.forEach((ref, i) => {
      const y = ref.view(x, i);
      expect(host(b!.crops[i]!)).toEqual(host(y));
      y.dispose();
    });
    x.dispose();
    disposeBatch(b!);
  });

  it("each group's crops cover area fractions from its own scale range", () => {
    const rng = new Rng(11);
    const [global, local] = resolveViews(multiCrop).map(
      (g) => new BatchAugmentation(g.crops[0]!, ds, rng),
    );
    const fractions = (aug: BatchAugmentation) => {
      const { crops } = aug.drawParams(4000);
      return Array.from({ length: 4000 }, (_, i) => (crops[i * 4 + 2]! * crops[i * 4 + 3]!) / 784);
    };
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    const l = fractions(local!);
    // scale [0.05, 0.4]: every try fits in 28 px, so the area is uniform on it (mean 0.225), up to rounding
    expect(Math.min(...l)).toBeGreaterThan(0.03);
    expect(Math.max(...l)).toBeLessThan(0.45);
    expect(mean(l)).toBeCloseTo(0.225, 2);
    const g = fractions(global!);
    expect(Math.min(...g)).toBeGreaterThan(0.36);
    expect(mean(g)).toBeGreaterThan(0.65);
  });

  it('solarize: pixels >= 0.5 of flagged images become 1 - x, others are untouched', () => {
    const x = tf.tensor4d([0.2, 0.5, 0.9, 0.49, 0.2, 0.5, 0.9, 0.49], [2, 1, 4, 1]);
    const y = solarizeBatch(x, Float32Array.from([1, 0]));
    const out = host(y);
    [0.2, 0.5, 0.1, 0.49, 0.2, 0.5, 0.9, 0.49].forEach((v, i) => expect(out[i]).toBeCloseTo(v, 6));
    // the threshold itself is solarized (0.5 is its own image; at 0.6 it is not)
    const edge = solarizeBatch(tf.tensor4d([0.6, 0.59], [1, 1, 2, 1]), Float32Array.from([1]), 0.6);
    host(edge).forEach((v, i) => expect(v).toBeCloseTo([0.4, 0.59][i]!, 6));
    const always = new BatchAugmentation(
      dataOf({ augmentation: { solarize: 1 } }).augmentation,
      ds,
      new Rng(0),
    );
    expect(Array.from(always.drawParams(5).solarize!)).toEqual([1, 1, 1, 1, 1]);
    expect(
      new BatchAugmentation(dataOf({}).augmentation, ds, new Rng(0)).drawParams(5).solarize,
    ).toBeUndefined();
    tf.dispose([x, y, edge]);
  });
});
