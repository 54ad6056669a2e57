import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { Rng } from '@contrast/core';
import {
  headLogits,
  LINEAR_PROBE_DEFAULTS,
  linearEvaluation,
  linearProbe,
  probeLearningRate,
  PROBE_LR_SWEEP,
  selectProbeLr,
  topKAccuracy,
  trainLinearHeads,
} from './linear.js';

/**
 * n points of 10 Gaussian classes in `dim` dimensions: centres N(0, scale),
 * noise N(0, noise), all multiplied by `gain` (unnormalised features).
 */
function gaussianClasses(seed: number, dim: number, scale: number, noise: number, gain = 1) {
  const rng = new Rng(seed);
  const centres = Array.from({ length: 10 }, () => rng.normalArray(dim, scale));
  return (n: number) => {
    const x = new Float32Array(n * dim);
    const y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = rng.int(10);
      const e = rng.normalArray(dim, noise);
      for (let j = 0; j < dim; j++) x[i * dim + j] = gain * (centres[y[i]!]![j]! + e[j]!);
    }
    return { features: tf.tensor2d(x, [n, dim]), labels: y };
  };
}

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

  it('trains heads side by side exactly as each lr alone would (same batches, same init)', () => {
    const make = gaussianClasses(5, 8, 1, 0.5);
    const train = make(300);
    const o = { ...LINEAR_PROBE_DEFAULTS, epochs: 4, batchSize: 64 };
    const before = tf.memory().numTensors;
    const both = trainLinearHeads(train, 10, new Rng(1), o, [0.1, 3]);
    for (const [i, lr] of [0.1, 3].entries()) {
      const alone = trainLinearHeads(train, 10, new Rng(1), o, [lr]);
      expect(both.losses[i]).toEqual(alone.losses[0]!.map((l) => expect.closeTo(l, 5)));
      const gap = tf.tidy(() =>
        tf.max(
          tf.abs(tf.sub(headLogits(both, i, train.features), headLogits(alone, 0, train.features))),
        ),
      );
      expect(gap.dataSync()[0]).toBeLessThan(1e-4);
      tf.dispose([gap, alone.w, alone.b]);
    }
    tf.dispose([both.w, both.b]);
    expect(tf.memory().numTensors).toBe(before);
    train.features.dispose();
  });

  it('selects the best held-out lr among those that converge; lr 30 does not on unnormalised features', () => {
    // overlapping classes, features scaled x5 (norm ~20): large lrs overshoot
    const make = gaussianClasses(7, 16, 0.5, 1, 5);
    const train = make(2000);
    const before = tf.memory().numTensors;
    const s = selectProbeLr(train, 10, new Rng(0), { epochs: 10, batchSize: 100 });
    expect(tf.memory().numTensors).toBe(before);
    expect(s.candidates.map((c) => c.lr)).toEqual([...PROBE_LR_SWEEP.lrs]);
    const chance = Math.log(10);
    const converged = s.candidates.filter((c) => c.finalLoss < chance);
    expect(converged.map((c) => c.lr)).toEqual([0.1, 0.3]); // 1 to 30 end above chance
    const top = (cs: typeof s.candidates) => Math.max(...cs.map((c) => c.heldOutTop1));
    // lr 10's oversized logits happen to read the best held-out top-1: not chosen
    expect(s.candidates.find((c) => c.heldOutTop1 === top(s.candidates))!.lr).toBe(10);
    expect(s.lr).toBe(converged.find((c) => c.heldOutTop1 === top(converged))!.lr);
    expect(s.candidates.find((c) => c.lr === s.lr)!.finalLoss).toBeLessThan(chance);
    // 10% held out, disjoint from the fitted rows, together the whole training split
    expect(s.heldOut).toHaveLength(200);
    expect(s.fitted).toHaveLength(1800);
    const all = [...s.heldOut, ...s.fitted].sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    train.features.dispose();
  });

  it('never looks at the test split to choose: random test labels change the score, not the choice', () => {
    const make = gaussianClasses(11, 16, 3, 1);
    const train = make(1000);
    const test = make(300);
    const options = { epochs: 5, batchSize: 100 };
    const real = linearEvaluation(train, test, 10, new Rng(2), options);
    const shuffled = Int32Array.from(new Rng(4).permutation(300), (p) => test.labels[p]!);
    const noisy = linearEvaluation(
      train,
      { features: test.features, labels: shuffled },
      10,
      new Rng(2),
      options,
    );
    expect(real.top1).toBeGreaterThan(0.9);
    expect(noisy.top1).toBeLessThan(0.3);
    expect(noisy.lr).toBe(real.lr);
    expect(noisy.selection!.candidates).toEqual(real.selection!.candidates);
    // a fixed lr skips the selection and is the plain probe
    const fixed = linearEvaluation(train, test, 10, new Rng(2), { ...options, lr: 1 });
    expect(fixed.selection).toBeUndefined();
    expect(fixed.lr).toBe(1);
    expect(fixed.top1).toBe(linearProbe(train, test, 10, new Rng(2), { ...options, lr: 1 }).top1);
    tf.dispose([train.features, test.features]);
  });
});
