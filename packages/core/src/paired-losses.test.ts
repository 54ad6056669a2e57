import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ContractError } from './errors.js';
import {
  barlowTwinsLoss,
  barlowTwinsPairedLoss,
  batchStandardize,
  NeighbourInfoNceLoss,
  nearestNeighbours,
  vicregLoss,
  vicregPairedLoss,
} from './paired-losses.js';

const t2 = (rows: number[][]) => tf.tensor2d(rows);
const value = (s: tf.Scalar) => s.dataSync()[0]!;
const WEIGHTS = { invariance: 25, variance: 25, covariance: 1 };

// [4, 2]: columns of mean 0, biased variance 1, uncorrelated (a 2^2 factorial design)
const DECORRELATED = [
  [1, 1],
  [1, -1],
  [-1, 1],
  [-1, -1],
];

describe('barlowTwinsLoss', () => {
  it('is 0 for identical, decorrelated, standardised embeddings (C = I)', () => {
    const z = t2(DECORRELATED);
    expect(value(barlowTwinsLoss(z, z, { lambda: 0.0051 }))).toBeCloseTo(0, 4);
  });

  it('matches a hand-computed 2 x 2 cross-correlation', () => {
    // z1's columns standardise to a = [1, -1, 1, -1] and b = [1, 1, -1, -1] (up to eps);
    // z2 = [a, a]: C = [[1, 1], [0, 0]] -> on-diagonal (1-1)^2 + (1-0)^2 = 1, off-diagonal 1^2 + 0^2 = 1
    const z1 = t2([
      [3, 2],
      [1, 2],
      [3, 0],
      [1, 0],
    ]);
    const z2 = t2([
      [5, 5],
      [-5, -5],
      [5, 5],
      [-5, -5],
    ]);
    const eps = Math.sqrt(1 / (1 + 1e-5)); // BatchNorm's eps shrinks the unit std a little
    const c11 = eps * Math.sqrt(25 / (25 + 1e-5));
    const expected = (1 - c11) ** 2 + 1 + 0.5 * c11 ** 2;
    expect(value(barlowTwinsLoss(z1, z2, { lambda: 0.5 }))).toBeCloseTo(expected, 4);
    expect(value(barlowTwinsLoss(z1, z2, { lambda: 0.5, scale: 2 }))).toBeCloseTo(2 * expected, 4);
  });

  it('is invariant to each dimension s scale and shift (the batch standardisation)', () => {
    const z = t2(DECORRELATED);
    const moved = tf.add(tf.mul(z, [3, 0.5]), [10, -4]) as tf.Tensor2D;
    expect(value(barlowTwinsLoss(z, moved, { lambda: 1 }))).toBeCloseTo(0, 4);
    const s = batchStandardize(moved).arraySync();
    expect(s[0]![0]).toBeCloseTo(1, 4);
  });

  it('refuses embeddings of different shapes or a batch of 1', () => {
    expect(() => barlowTwinsLoss(t2([[1, 2]]), t2([[1, 2]]), { lambda: 1 })).toThrow(ContractError);
    expect(() => barlowTwinsLoss(t2(DECORRELATED), t2([[1, 2]]), { lambda: 1 })).toThrow(
      /\[4, 2\] and \[1, 2\]/,
    );
  });
});

describe('vicregLoss', () => {
  it('invariance: the MSE over N x D', () => {
    const z1 = t2([
      [0, 0],
      [2, 2],
    ]);
    const z2 = t2([
      [1, 0],
      [2, 4],
    ]);
    // (1 + 0 + 0 + 4) / 4
    expect(value(vicregLoss(z1, z2, WEIGHTS).invariance)).toBeCloseTo(1.25, 5);
  });

  it('variance: the hinge on sqrt(var + 1e-4) (unbiased), zero when every std >= 1', () => {
    const wide = t2(DECORRELATED.map(([a, b]) => [2 * a!, 2 * b!]));
    expect(value(vicregLoss(wide, wide, WEIGHTS).variance)).toBe(0);
    // columns [0, 0, 0, 0] (std 0.01) and [1, -1, 1, -1] (unbiased var 4/3, std > 1)
    const z = t2([
      [0, 1],
      [0, -1],
      [0, 1],
      [0, -1],
    ]);
    // per branch mean over dims: (1 - 0.01 + 0) / 2; averaged over the two branches
    expect(value(vicregLoss(z, z, WEIGHTS).variance)).toBeCloseTo(0.495, 5);
  });

  it('covariance: the off-diagonal squares of each branch covariance (over N - 1), / D, summed', () => {
    const z = t2([
      [1, 1],
      [-1, -1],
      [1, 1],
      [-1, -1],
    ]);
    // Cov = [[4/3, 4/3], [4/3, 4/3]]: off-diagonal squares 2 * 16/9, / D = 16/9, two branches
    const out = vicregLoss(z, z, WEIGHTS);
    expect(value(out.covariance)).toBeCloseTo(32 / 9, 4);
    const dec = vicregLoss(t2(DECORRELATED), t2(DECORRELATED), WEIGHTS);
    expect(value(dec.covariance)).toBeCloseTo(0, 6);
    // loss = 25 s + 25 v + 1 c: here s = 0 and v = 0 (std 2/sqrt(3) > 1)
    expect(value(out.loss)).toBeCloseTo(32 / 9, 4);
    expect(
      value(vicregLoss(z, z, { invariance: 25, variance: 25, covariance: 3 }).loss),
    ).toBeCloseTo(32 / 3, 4);
  });
});

describe('nearestNeighbours', () => {
  it('picks the support row of largest cosine (not dot product), without gradient into it', () => {
    const q = tf.variable(
      t2([
        [10, 0], // far along x: largest dot product with [1, 0.9], not the largest cosine
        [0, 1],
        [1, 1],
      ]),
    );
    const z = t2([
      [1, 0.9],
      [-0.1, 1],
      [1, -0.5],
    ]);
    const { neighbours, index } = nearestNeighbours(z, q);
    expect(Array.from(index.dataSync())).toEqual([2, 1, 0]);
    expect(neighbours.arraySync()).toEqual([
      [1, 1],
      [0, 1],
      [10, 0],
    ]);
    const { grads } = tf.variableGrads(
      () => tf.sum(tf.mul(nearestNeighbours(z, q).neighbours, 3)) as tf.Scalar,
      [q],
    );
    expect(Array.from(grads[q.name]!.dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
    q.dispose();
  });
});

describe('NeighbourInfoNceLoss', () => {
  it('is cross-entropy over N candidates, the own row the positive, unscaled', () => {
    const loss = new NeighbourInfoNceLoss();
    const query = t2([
      [1, 0],
      [0, 1],
    ]);
    const positive = t2([
      [1, 0],
      [1, 0],
    ]);
    const { loss: l, accuracy } = loss.compute({
      query,
      positive,
      negatives: 'in-batch',
      temperature: 0.5,
    });
    // row 0: logits [2, 2] -> log 2; row 1: logits [0, 0] -> log 2
    expect(value(l)).toBeCloseTo(Math.log(2), 5);
    expect(loss.chance({ batchSize: 2 })).toBeCloseTo(Math.log(2), 9);
    // argmax ties pick the first candidate: row 0 right, row 1 wrong
    expect(value(accuracy)).toBe(0.5);
    // data-parallel: rows start at 1 of a global batch of 2, the same row 1 term
    const part = loss.compute({
      query: query.slice([1, 0], [1, 2]),
      positive: positive.slice([1, 0], [1, 2]),
      negatives: 'in-batch',
      temperature: 0.5,
      batch: { query, positive, start: 1 },
    });
    expect(value(part.loss)).toBeCloseTo(Math.log(2), 5);
  });
});

describe("the 'paired' losses", () => {
  it('barlowTwinsPairedLoss and vicregPairedLoss compute the functions with their settings', () => {
    const z1 = t2(DECORRELATED);
    const z2 = t2(DECORRELATED.map((r) => r.map((v, j) => v + j + 0.5 * r[0]!)));
    const bt = barlowTwinsPairedLoss({ lambda: 0.5, scale: 2 });
    expect(bt.kind).toBe('paired');
    expect(value(bt.compute({ z1, z2 }).loss)).toBeCloseTo(
      value(barlowTwinsLoss(z1, z2, { lambda: 0.5, scale: 2 })),
      5,
    );
    const weights = { invariance: 2, variance: 3, covariance: 5 };
    const out = vicregPairedLoss(weights).compute({ z1, z2 });
    const want = vicregLoss(z1, z2, weights);
    expect(value(out.loss)).toBeCloseTo(value(want.loss), 5);
    expect(value(out.metrics!.invariance_loss!)).toBeCloseTo(value(want.invariance), 5);
    expect(value(out.metrics!.variance_loss!)).toBeCloseTo(value(want.variance), 5);
    expect(value(out.metrics!.covariance_loss!)).toBeCloseTo(value(want.covariance), 5);
  });
});
