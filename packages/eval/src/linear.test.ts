import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { Rng } from '@contrast/core';
import { linearProbe, probeLearningRate, topKAccuracy, LINEAR_PROBE_DEFAULTS } from './linear.js';

describe('linear probe', () => {
  it('steps the lr down by 10x at 60% and 80% of training (MoCo: epochs 60 and 80 of 100)', () => {
    const o = LINEAR_PROBE_DEFAULTS;
    expect([0, 59, 60, 79, 80, 99].map((e) => probeLearningRate(o, e))).toEqual([
      30, 30, 3, 3, 0.30000000000000004, 0.30000000000000004,
    ]);
  });

  it('top-k counts a hit when the label is among the k largest logits', () => {
    const logits = tf.tensor2d([
      [0.1, 0.9, 0.0],
      [0.5, 0.2, 0.3],
      [0.2, 0.3, 0.5],
    ]);
    const labels = Int32Array.from([1, 2, 0]);
    expect(topKAccuracy(logits, labels, 1)).toBeCloseTo(1 / 3, 10); // only row 0
    expect(topKAccuracy(logits, labels, 2)).toBeCloseTo(2 / 3, 10); // row 1's label 2 is second
    expect(topKAccuracy(logits, labels, 5)).toBe(1); // k capped at the class count
    logits.dispose();
  });

  it('separates 10 Gaussian classes it cannot have memorised, and leaks no tensor', () => {
    const rng = new Rng(3);
    const dim = 16;
    const centres = Array.from({ length: 10 }, () => rng.normalArray(dim, 1));
    const make = (n: number) => {
      const x = new Float32Array(n * dim);
      const y = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        y[i] = i % 10;
        const noise = rng.normalArray(dim, 0.3);
        for (let j = 0; j < dim; j++) x[i * dim + j] = centres[y[i]!]![j]! + noise[j]!;
      }
      return { features: tf.tensor2d(x, [n, dim]), labels: y };
    };
    const train = make(2000);
    const test = make(500);
    const before = tf.memory().numTensors;
    const r = linearProbe(train, test, 10, new Rng(0), { epochs: 10, lr: 1, batchSize: 100 });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.top1).toBeGreaterThan(0.97);
    expect(r.top5).toBe(1);
    expect(r.losses).toHaveLength(10);
    expect(r.losses[9]!).toBeLessThan(r.losses[0]!);
    // with random labels the test split stays at chance: the probe is not reading the labels
    const perm = new Rng(9).permutation(train.labels.length);
    const randomLabels = Int32Array.from(perm, (p) => train.labels[p]!);
    const chance = linearProbe(
      { features: train.features, labels: randomLabels },
      test,
      10,
      new Rng(0),
      {
        epochs: 5,
        lr: 1,
        batchSize: 100,
      },
    );
    expect(chance.top1).toBeLessThan(0.2);
    tf.dispose([train.features, test.features]);
  });
});
