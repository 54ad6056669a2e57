import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  ema,
  emaUpdateVariables,
  infoNce,
  infoNceFused,
  infoNceLogits,
  l2Normalize,
  topOneAccuracy,
} from './math.js';
import { Rng } from './rng.js';

const rows = (t: tf.Tensor) => t.arraySync() as number[][];

/** The paper's Algorithm 1 as plain loops: the reference the tensor code must match. */
function naiveInfoNce(q: number[][], kPos: number[][], queue: number[][], tau: number): number {
  const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);
  let total = 0;
  for (let i = 0; i < q.length; i++) {
    const logits = [dot(q[i]!, kPos[i]!) / tau, ...queue.map((k) => dot(q[i]!, k) / tau)];
    const max = Math.max(...logits);
    const lse = max + Math.log(logits.reduce((s, l) => s + Math.exp(l - max), 0));
    total += lse - logits[0]!;
  }
  return total / q.length;
}

describe('l2Normalize', () => {
  it('divides each row by its norm (3-4-5 triangle)', () => {
    const y = l2Normalize(
      tf.tensor2d([
        [3, 4],
        [0, 5],
      ]),
    );
    expect(rows(y)[0]![0]).toBeCloseTo(0.6, 6);
    expect(rows(y)[0]![1]).toBeCloseTo(0.8, 6);
    expect(rows(y)[1]).toEqual([0, 1]);
  });
  it('leaves a zero row at zero instead of NaN', () => {
    expect(rows(l2Normalize(tf.tensor2d([[0, 0]])))[0]).toEqual([0, 0]);
  });
});

describe('InfoNCE', () => {
  it('is exactly log(K+1) when query, key and all K negatives are the same unit vector', () => {
    for (const [k, tau] of [
      [1, 0.07],
      [16, 0.2],
      [4096, 0.1],
    ] as const) {
      const u = l2Normalize(tf.ones([1, 8])) as tf.Tensor2D;
      const query = tf.tile(u, [4, 1]) as tf.Tensor2D;
      const negatives = tf.tile(u, [k, 1]) as tf.Tensor2D;
      const { loss, logits } = infoNce({ query, positive: query, negatives, temperature: tau });
      expect(loss.dataSync()[0]).toBeCloseTo(Math.log(k + 1), 4);
      expect(logits.shape).toEqual([4, 1 + k]);
    }
  });

  it('puts q.k+/t in column 0 and q.queue/t after it (hand-computed cosines)', () => {
    const q = tf.tensor2d([[1, 0]]);
    const kPos = tf.tensor2d([[0.6, 0.8]]);
    const queue = tf.tensor2d([
      [0, 1],
      [-1, 0],
    ]);
    expect(rows(infoNceLogits(q, kPos, queue, 0.5))[0]).toEqual(
      [1.2, 0, -2].map((v) => expect.closeTo(v, 6)),
    );
  });

  it('matches a naive loop on random unit vectors', () => {
    const rng = new Rng(7);
    const mk = (n: number) =>
      l2Normalize(tf.tensor2d(rng.normalArray(n * 16), [n, 16])) as tf.Tensor2D;
    const [q, kPos, queue] = [mk(5), mk(5), mk(33)];
    const { loss } = infoNce({ query: q, positive: kPos, negatives: queue, temperature: 0.07 });
    expect(loss.dataSync()[0]).toBeCloseTo(naiveInfoNce(rows(q), rows(kPos), rows(queue), 0.07), 4);
  });

  it('leaks no tensors', () => {
    const q = l2Normalize(tf.randomNormal([4, 8], 0, 1, 'float32', 1)) as tf.Tensor2D;
    const queue = l2Normalize(tf.randomNormal([10, 8], 0, 1, 'float32', 2)) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    const { loss, logits } = infoNce({ query: q, positive: q, negatives: queue, temperature: 0.1 });
    expect(tf.memory().numTensors).toBe(before + 2);
    tf.dispose([loss, logits]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('InfoNCE as one op with a hand-written gradient', () => {
  const rng = new Rng(11);
  const mk = (n: number, d = 16) =>
    l2Normalize(tf.tensor2d(rng.normalArray(n * d), [n, d])) as tf.Tensor2D;
  const maxAbs = (a: tf.Tensor, b: tf.Tensor) =>
    tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);

  it('is log(K+1) when the query, its key and all K negatives are one unit vector', () => {
    for (const [k, tau] of [
      [1, 0.07],
      [4096, 0.1],
    ] as const) {
      const u = l2Normalize(tf.ones([1, 8])) as tf.Tensor2D;
      const query = tf.tile(u, [4, 1]) as tf.Tensor2D;
      const negatives = tf.tile(u, [k, 1]) as tf.Tensor2D;
      const { loss, accuracy } = infoNceFused({
        query,
        positive: query,
        negatives,
        temperature: tau,
      });
      expect(loss.dataSync()[0]).toBeCloseTo(Math.log(k + 1), 4);
      expect(accuracy.dataSync()[0]).toBe(1); // ties go to the positive, as argmax picks column 0
    }
  });

  it('matches the composite InfoNCE in value, accuracy and the gradients of q, k+ and the negatives', () => {
    const [q, k, neg] = [mk(6), mk(6), mk(40)];
    const ref = infoNce({ query: q, positive: k, negatives: neg, temperature: 0.07 });
    const fused = infoNceFused({ query: q, positive: k, negatives: neg, temperature: 0.07 });
    expect(Math.abs(fused.loss.dataSync()[0]! - ref.loss.dataSync()[0]!)).toBeLessThan(1e-5);
    const refAcc = topOneAccuracy(ref.logits, tf.zeros([6], 'int32') as tf.Tensor1D);
    expect(fused.accuracy.dataSync()[0]).toBe(refAcc.dataSync()[0]);
    const lossOf =
      (fn: typeof infoNce | typeof infoNceFused) => (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
        fn({
          query: a as tf.Tensor2D,
          positive: b as tf.Tensor2D,
          negatives: c as tf.Tensor2D,
          temperature: 0.07,
        }).loss;
    const gRef = tf.grads(lossOf(infoNce))([q, k, neg]);
    const gFused = tf.grads(lossOf(infoNceFused))([q, k, neg]);
    gFused.forEach((g, i) => {
      expect(tf.tidy(() => tf.norm(gRef[i]!).dataSync()[0]!)).toBeGreaterThan(1e-3);
      expect(maxAbs(g, gRef[i]!)).toBeLessThan(1e-4);
    });
    tf.dispose([q, k, neg, ref.loss, ref.logits, fused.loss, fused.accuracy, refAcc]);
    tf.dispose([...gRef, ...gFused]);
  });

  it('a frozen queue (non-trainable variable) gets no gradient; the query the same one', () => {
    const [q, k] = [mk(4), mk(4)];
    const negT = mk(30);
    const queue = tf.variable(negT, false);
    const f =
      (negatives: tf.Tensor2D) =>
      (a: tf.Tensor): tf.Scalar =>
        infoNceFused({ query: a as tf.Tensor2D, positive: k, negatives, temperature: 0.2 }).loss;
    const [viaVar] = tf.grads(f(queue))([q]);
    const [viaTensor] = tf.grads(f(negT))([q]);
    expect(maxAbs(viaVar!, viaTensor!)).toBe(0);
    tf.dispose([q, k, negT, queue, viaVar!, viaTensor!]);
  });

  it('leaks no tensors, with or without a gradient', () => {
    const [q, k, neg] = [mk(4), mk(4), mk(10)];
    const before = tf.memory().numTensors;
    const out = infoNceFused({ query: q, positive: k, negatives: neg, temperature: 0.1 });
    expect(tf.memory().numTensors).toBe(before + 2);
    tf.dispose([out.loss, out.accuracy]);
    const g = tf.grads((a: tf.Tensor) =>
      tf.tidy(() => {
        const r = infoNceFused({
          query: a as tf.Tensor2D,
          positive: k,
          negatives: neg,
          temperature: 0.1,
        });
        return r.loss;
      }),
    )([q]);
    tf.dispose(g);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([q, k, neg]);
  });
});

describe('EMA', () => {
  it('with m = 0.5 averages two numbers', () => {
    expect(ema(tf.scalar(2), tf.scalar(4), 0.5).dataSync()[0]).toBe(3);
  });
  it('updates variables in place: 0.9 * [1, 10] + 0.1 * [11, 0] = [2, 9]', () => {
    const target = tf.variable(tf.tensor1d([1, 10]));
    emaUpdateVariables([target], [tf.tensor1d([11, 0])], 0.9);
    expect(Array.from(target.dataSync())).toEqual([expect.closeTo(2, 5), expect.closeTo(9, 5)]);
  });
  it('m = 0 copies the source, m = 1 keeps the target', () => {
    const a = tf.variable(tf.tensor1d([1, 2]));
    emaUpdateVariables([a], [tf.tensor1d([5, 6])], 1);
    expect(Array.from(a.dataSync())).toEqual([1, 2]);
    emaUpdateVariables([a], [tf.tensor1d([5, 6])], 0);
    expect(Array.from(a.dataSync())).toEqual([5, 6]);
  });
});
