import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import type { ImageSplit, TrainingDataset } from '@contrast/core';
import { alignmentUniformity, inferenceBatchSize, knnOnPixels, knnPredict } from './knn.js';

describe('weighted kNN', () => {
  it('votes with weight exp(sim / t) (hand-computed)', () => {
    // Query (1,0). Bank: two class-0 rows at cos 0.6, one class-1 row at cos 1.0.
    const bank = tf.tensor2d([
      [0.6, 0.8],
      [0.6, -0.8],
      [1, 0],
    ]);
    const labels = tf.tensor1d([0, 0, 1], 'int32');
    const q = tf.tensor2d([[1, 0]]);
    // t = 0.1: class 0 gets 2 e^6 = 807, class 1 gets e^10 = 22026 -> class 1
    expect(knnPredict(bank, labels, q, 3, 0.1, 2).dataSync()[0]).toBe(1);
    // t = 1: class 0 gets 2 e^0.6 = 3.64, class 1 gets e^1 = 2.72 -> class 0
    expect(knnPredict(bank, labels, q, 3, 1, 2).dataSync()[0]).toBe(0);
    // k = 1: only the nearest neighbour votes
    expect(knnPredict(bank, labels, q, 1, 1, 2).dataSync()[0]).toBe(1);
  });

  it('classifies separable clusters perfectly and leaks nothing', () => {
    const img = (v: number) => new Uint8Array(4).fill(v);
    const train = {
      images: new Uint8Array([...img(10), ...img(20), ...img(240), ...img(250)]),
      labels: new Uint8Array([0, 0, 1, 1]),
      n: 4,
    };
    const test = {
      images: new Uint8Array([...img(15), ...img(245)]),
      labels: new Uint8Array([0, 1]),
      n: 2,
    };
    const ds: TrainingDataset = {
      name: 't',
      height: 2,
      width: 2,
      channels: 1,
      numClasses: 2,
      mean: [0.5],
      std: [0.5],
      providesIndices: true,
      train,
      test,
    };
    const toBatch = (split: ImageSplit, s: number, e: number) =>
      tf.tidy(
        () =>
          tf.sub(
            tf.div(
              tf.tensor4d(Float32Array.from(split.images.subarray(s * 4, e * 4)), [e - s, 2, 2, 1]),
              127.5,
            ),
            1,
          ) as tf.Tensor4D,
      );
    const before = tf.memory().numTensors;
    const r = knnOnPixels(ds, toBatch, { k: 2, t: 0.1 });
    expect(r.accuracy).toBe(1);
    expect(r).toMatchObject({ bankSize: 4, testSize: 2 });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('inference batch size', () => {
  it('keeps the pixels per batch of 500 Fashion-MNIST images, within [16, base]', () => {
    expect(inferenceBatchSize(28, 28)).toBe(500);
    expect(inferenceBatchSize(32, 32)).toBe(382); // floor(500 * 784 / 1024)
    expect(inferenceBatchSize(64, 64)).toBe(95);
    expect(inferenceBatchSize(96, 96, 250)).toBe(21);
    expect(inferenceBatchSize(224, 224)).toBe(16);
    expect(inferenceBatchSize(8, 8)).toBe(500);
  });
});

describe('alignment and uniformity (Wang & Isola)', () => {
  it('matches hand values: identical views align perfectly; antipodal pairs are maximally uniform', () => {
    const a = tf.tensor2d([
      [1, 0],
      [-1, 0],
    ]);
    // views identical: alignment 0; the two points are antipodal: ||x - y||^2 = 4 -> log exp(-8) = -8
    const r = alignmentUniformity({ a, b: a });
    expect(r.alignment).toBeCloseTo(0, 6);
    expect(r.uniformity).toBeCloseTo(-8, 4);
    // orthogonal views: ||x - x+||^2 = 2 each
    const b = tf.tensor2d([
      [0, 1],
      [0, -1],
    ]);
    expect(alignmentUniformity({ a, b }).alignment).toBeCloseTo(2, 6);
    // all points equal: uniformity log 1 = 0 (the worst)
    const same = tf.tensor2d([
      [0.6, 0.8],
      [0.6, 0.8],
      [0.6, 0.8],
    ]);
    expect(alignmentUniformity({ a: same, b: same }).uniformity).toBeCloseTo(0, 5);
    tf.dispose([a, b, same]);
  });
});
