import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { NegativeCosineLoss, NormalizedMseLoss, SHARED_LOSSES } from './losses.js';
import { negativeCosine, normalizedMse } from './math.js';
import type { Encoder } from './contracts.js';
import {
  asOneBatch,
  embedCrops,
  stepPhases,
  stopGradient,
  symmetrize,
  throughCropGroups,
  type Views,
} from './method.js';

const scalar = (t: tf.Tensor) => t.dataSync()[0]!;

describe('regression losses (BYOL, SimSiam): closed forms', () => {
  const e1 = tf.tensor2d([[1, 0, 0]]);
  const e2 = tf.tensor2d([[0, 1, 0]]);

  it('identical directions give the minimum: D = -1, normalised MSE = 0 (any scale)', () => {
    const scaled = tf.tensor2d([[3, 0, 0]]);
    expect(scalar(negativeCosine(e1, scaled))).toBeCloseTo(-1, 6);
    expect(scalar(normalizedMse(e1, scaled))).toBeCloseTo(0, 6);
    scaled.dispose();
  });

  it('orthogonal vectors: D = 0, normalised MSE = 2; opposite: D = 1, MSE = 4', () => {
    expect(scalar(negativeCosine(e1, e2))).toBeCloseTo(0, 6);
    expect(scalar(normalizedMse(e1, e2))).toBeCloseTo(2, 6);
    const minus = tf.neg(e1) as tf.Tensor2D;
    expect(scalar(negativeCosine(e1, minus))).toBeCloseTo(1, 6);
    expect(scalar(normalizedMse(e1, minus))).toBeCloseTo(4, 6);
    minus.dispose();
  });

  it('averages over the batch: rows at cos 1 and cos 0.6 give D = -0.8, MSE = 2 - 2 * 0.8', () => {
    const p = tf.tensor2d([
      [1, 0],
      [1, 0],
    ]);
    const z = tf.tensor2d([
      [2, 0],
      [0.6, 0.8],
    ]);
    expect(scalar(negativeCosine(p, z))).toBeCloseTo(-0.8, 6);
    expect(scalar(normalizedMse(p, z))).toBeCloseTo(0.4, 6);
    // normalised MSE = 2 + 2 D, everywhere
    expect(scalar(normalizedMse(p, z))).toBeCloseTo(2 + 2 * scalar(negativeCosine(p, z)), 6);
    tf.dispose([p, z]);
  });

  it('gradient of D(p, z) w.r.t. p is -(z/|z| - cos p/|p|) / (|p| N) (hand-computed)', () => {
    const p = tf.tensor2d([[2, 0]]);
    const z = tf.tensor2d([[0.6, 0.8]]);
    // cos = 0.6; dcos/dp = z/(|p||z|) - cos p/|p|^2 = [0.3, 0.4] - 0.6 [0.5, 0] = [0, 0.4]
    const g = tf.grad((x: tf.Tensor) => negativeCosine(x as tf.Tensor2D, z))(p);
    const [g0, g1] = Array.from(g.dataSync());
    expect(g0).toBeCloseTo(0, 6);
    expect(g1).toBeCloseTo(-0.4, 6);
    tf.dispose([p, z, g]);
  });

  it('the loss classes are registered by name with their kind, and leak nothing', () => {
    expect(SHARED_LOSSES['negative-cosine']!.kind).toBe('regression');
    expect(SHARED_LOSSES['normalized-mse']!.kind).toBe('regression');
    const before = tf.memory().numTensors;
    const a = new NegativeCosineLoss().compute({ prediction: e1, target: e2 }).loss;
    const b = new NormalizedMseLoss().compute({ prediction: e1, target: e1 }).loss;
    expect([scalar(a), scalar(b)].map((v) => +v.toFixed(6))).toEqual([0, 0]);
    tf.dispose([a, b]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('stopGradient', () => {
  it('is the identity forward and blocks the gradient of its branch only', () => {
    const x = tf.tensor1d([1, 2, 3]);
    expect(Array.from(stopGradient(x).dataSync())).toEqual([1, 2, 3]);
    // f(x) = sum(x * sg(x)): df/dx = sg(x) = x (without sg it would be 2x)
    const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(v, stopGradient(v))))(x);
    expect(Array.from(g.dataSync())).toEqual([1, 2, 3]);
    // f(x) = sum(sg(x)^2): no path left, the gradient is zero
    const z = tf.grad((v: tf.Tensor) => tf.sum(tf.square(stopGradient(v))))(x);
    expect(Array.from(z.dataSync())).toEqual([0, 0, 0]);
    tf.dispose([x, g, z]);
  });
});

describe('symmetrize', () => {
  const term = (a: number, b: number) => (d: 0 | 1) => ({
    loss: tf.scalar(d === 0 ? a : b),
    metrics: { acc: tf.scalar(d === 0 ? 1 : 0) },
    carry: { key: tf.tensor2d([[d]]) },
  });

  it("sums both directions (MoCo's demo, BYOL) or averages them (SimSiam); metrics are averaged", () => {
    tf.tidy(() => {
      const s = symmetrize(term(2, 3));
      expect(scalar(s.loss)).toBe(5);
      expect(scalar(s.metrics!.acc!)).toBe(0.5);
      expect(s.carry!.key!.arraySync()).toEqual([[0], [1]]); // view order
      expect(scalar(symmetrize(term(2, 3), 'mean').loss)).toBe(2.5);
    });
  });

  it("lists a method's phases with the trainer's backward and optimizer in between", () => {
    expect(
      stepPhases({ phases: { prepare: ['target'], objective: ['loss'], afterStep: ['ema'] } }),
    ).toEqual(['target', 'loss', 'backward', 'optimizer', 'ema']);
  });
});

describe('multi-crop batching (SwAV and DINO official forward)', () => {
  /** A batch statistic, as BN has: each row minus the batch mean. */
  const centred = (x: tf.Tensor2D) => tf.sub(x, tf.mean(x, 0, true)) as tf.Tensor2D;
  const pixelSums = (x: tf.Tensor4D) => tf.sum(x, [1, 2]) as tf.Tensor2D; // [n, C]
  const views = (): Pick<Views, 'crops' | 'groups'> => ({
    crops: [
      tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2, 1]), // global 0: sums 10, 26
      tf.tensor4d([0, 0, 0, 4, 1, 1, 1, 1], [2, 2, 2, 1]), // global 1: sums 4, 4
      tf.tensor4d([3, 9], [2, 1, 1, 1]), // local 0: sums 3, 9
    ],
    groups: [
      { name: 'global', start: 0, count: 2, size: [2, 2] },
      { name: 'local', start: 2, count: 1, size: [1, 1] },
    ],
  });

  it('asOneBatch lays the parts out split-major: BN group s holds slice s of every part', () => {
    const seen: number[][] = [];
    const record = (x: tf.Tensor2D) => {
      seen.push(...(x.arraySync() as number[][]));
      return x.clone();
    };
    const a = tf.tensor2d([[1], [2], [3], [4]]);
    const b = tf.tensor2d([[10], [20], [30], [40]]);
    const before = tf.memory().numTensors;
    const out = tf.tidy(() => asOneBatch(record, [a, b], 2).map((o) => o.arraySync()));
    expect(tf.memory().numTensors).toBe(before);
    expect(seen.map((r) => r[0])).toEqual([1, 2, 10, 20, 3, 4, 30, 40]);
    expect(out).toEqual([a.arraySync(), b.arraySync()]);
    expect(() => asOneBatch(record, [a, b], 3)).toThrow(
      /model.bnSplits.*a batch of 4 does not divide into 3 BatchNorm splits/,
    );
    expect(() => asOneBatch(record, [], 1)).toThrow(/parts of one batch size, got \[\]/);
    tf.dispose([a, b]);
  });

  it("throughCropGroups: a batch statistic over each group's crops together (hand values)", () => {
    const v = views();
    const out = throughCropGroups((x) => centred(pixelSums(x)), v, 1);
    // global group sums 10, 26, 4, 4: mean 11; local group 3, 9: mean 6
    expect(out.map((o) => o.arraySync())).toEqual([
      [[-1], [15]],
      [[-7], [-7]],
      [[-3], [3]],
    ]);
    // the teacher's call: the global group alone
    const global = throughCropGroups((x) => centred(pixelSums(x)), v, 1, v.groups.slice(0, 1));
    expect(global.map((o) => o.arraySync())).toEqual([
      [[-1], [15]],
      [[-7], [-7]],
    ]);
    tf.dispose([...v.crops, ...out, ...global]);
  });

  it("embedCrops: the backbone by group, the head's batch statistic over every crop at once", () => {
    const v = views();
    const encoder = {
      name: 'fake',
      features: (x: tf.Tensor4D) => centred(pixelSums(x)),
      // [f, mean of f^2 over the batch]: the second column reads every crop's rows
      projectFeatures: (f: tf.Tensor2D) =>
        tf.concat([f, tf.mul(tf.onesLike(f), tf.mean(tf.square(f)))], 1) as tf.Tensor2D,
    } as unknown as Encoder;
    const before = tf.memory().numTensors;
    const z = tf.tidy(() => embedCrops(encoder, v as Views, 1).map((t) => t.arraySync()));
    expect(tf.memory().numTensors).toBe(before);
    // features -1, 15, -7, -7, -3, 3: mean square 342 / 6 = 57 (by group it would be 81 and 9)
    const unit = (a: number) => [a / Math.hypot(a, 57), 57 / Math.hypot(a, 57)];
    const expected = [
      [unit(-1), unit(15)],
      [unit(-7), unit(-7)],
      [unit(-3), unit(3)],
    ];
    z.forEach((crop, c) =>
      crop.forEach((row, r) =>
        row.forEach((x, k) => expect(x).toBeCloseTo(expected[c]![r]![k]!, 6)),
      ),
    );
    const headless = { ...encoder, projectFeatures: undefined } as unknown as Encoder;
    expect(() => embedCrops(headless, v as Views, 1)).toThrow(/cannot run its head on features/);
    tf.dispose([...v.crops]);
  });
});
