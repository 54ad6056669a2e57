import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { AdamW } from './adamw.js';

const values = (t: tf.Tensor) => Array.from(t.dataSync());
const close = (xs: number[], digits = 6) => xs.map((x) => expect.closeTo(x, digits));

/** torch.optim.AdamW's update written out in float64, one parameter vector, `grads` in order. */
function naiveAdamW(w: number[], grads: number[][], lr: number, wd: number, b1 = 0.9, b2 = 0.999) {
  let m = w.map(() => 0);
  let v = w.map(() => 0);
  grads.forEach((g, k) => {
    const t = k + 1;
    w = w.map((x) => x * (1 - lr * wd));
    m = m.map((a, i) => b1 * a + (1 - b1) * g[i]!);
    v = v.map((a, i) => b2 * a + (1 - b2) * g[i]! ** 2);
    w = w.map(
      (x, i) =>
        x - ((lr / (1 - b1 ** t)) * m[i]!) / (Math.sqrt(v[i]!) / Math.sqrt(1 - b2 ** t) + 1e-8),
    );
  });
  return { w, m, v };
}

const G = [
  [0.5, -1],
  [1, 0.5],
  [-0.2, 0.3],
];

describe('AdamW (torch.optim.AdamW semantics)', () => {
  it('matches hand-computed updates without decay, bias correction visible', () => {
    const w = tf.variable(tf.tensor1d([1, -2]));
    const opt = new AdamW([w], [0.9, 0.999], 1e-8);
    const step = (g: number[]) =>
      opt.apply({ [w.name]: tf.tensor1d(g) }, [{ lr: 0.1, weightDecay: 0 }]);
    // step 1: m = 0.1 g, v = 0.001 g^2; corrected m^ = g, v^ = g^2, so the update is
    // lr * g / |g| = 0.1 per element: w = [0.9, -1.9]. Without the correction it would
    // be 0.1 * 0.1 g / (sqrt(0.001) |g|) = 0.316 per element.
    step(G[0]!);
    expect(values(w)).toEqual(close([0.9, -1.9]));
    // step 2, g = [1, 0.5]: m = 0.9 m + 0.1 g = [0.145, -0.04];
    // v = 0.999 v + 0.001 g^2 = [0.00124975, 0.001249]; 1 - b1^2 = 0.19, 1 - b2^2 = 0.001999;
    // update = 0.1 * (m / 0.19) / sqrt(v / 0.001999) = [0.0965182, -0.0266337]
    step(G[1]!);
    expect(values(w)).toEqual(close([0.8034818, -1.8733663]));
    step(G[2]!);
    expect(values(w)).toEqual(close(naiveAdamW([1, -2], G, 0.1, 0).w));
    const s = opt.state();
    expect(s.values.step).toEqual([3]);
    expect(values(s.tensors['exp_avg/0']!)).toEqual(close([0.1105, -0.006]));
  });

  it('decays decoupled from the gradient: w <- w (1 - lr wd) before the Adam step', () => {
    const w = tf.variable(tf.tensor1d([1, -2]));
    const opt = new AdamW([w], [0.9, 0.999], 1e-8);
    const step = (g: number[]) =>
      opt.apply({ [w.name]: tf.tensor1d(g) }, [{ lr: 0.1, weightDecay: 0.5 }]);
    // step 1: w (1 - 0.05) = [0.95, -1.9], then the same 0.1 per element: [0.85, -1.8]
    step(G[0]!);
    expect(values(w)).toEqual(close([0.85, -1.8]));
    // step 2: the moments do not see the decay: [0.8075, -1.71] - [0.0965182, -0.0266337]
    step(G[1]!);
    expect(values(w)).toEqual(close([0.7109818, -1.6833663]));
    step(G[2]!);
    expect(values(w)).toEqual(close(naiveAdamW([1, -2], G, 0.1, 0.5).w));
  });

  it('leaves a frozen parameter and its moments and step count untouched', () => {
    const a = tf.variable(tf.tensor1d([1, -2]));
    const b = tf.variable(tf.tensor1d([3]));
    const opt = new AdamW([a, b]);
    const grads = () => ({ [a.name]: tf.tensor1d([0.5, -1]), [b.name]: tf.tensor1d([1]) });
    opt.apply(grads(), [{ lr: 0.1, weightDecay: 0.5 }, null]);
    expect(values(b)).toEqual([3]);
    expect(values(opt.state().tensors['exp_avg/1']!)).toEqual([0]);
    expect(opt.state().values.step).toEqual([1, 0]);
    // its first update is a first step (bias correction with t = 1): lr * sign(g)
    opt.apply(grads(), [
      { lr: 0.1, weightDecay: 0 },
      { lr: 0.1, weightDecay: 0 },
    ]);
    expect(values(b)).toEqual(close([2.9]));
    expect(opt.state().values.step).toEqual([2, 1]);
  });

  it('resumes exactly from its state and leaks nothing', () => {
    const make = () => tf.variable(tf.tensor1d([1, -2]));
    const w = make();
    const opt = new AdamW([w]);
    const g = (v: tf.Variable, i: number) => ({ [v.name]: tf.tensor1d(G[i]!) });
    opt.apply(g(w, 0), [{ lr: 0.1, weightDecay: 0.5 }]);
    const before = tf.memory().numTensors;
    const grad = g(w, 1);
    opt.apply(grad, [{ lr: 0.1, weightDecay: 0.5 }]);
    tf.dispose(Object.values(grad));
    expect(tf.memory().numTensors).toBe(before);
    // a second optimizer loaded from the first's state continues identically
    const w2 = tf.variable(w.clone());
    const resumed = new AdamW([w2]);
    resumed.loadState(opt.state());
    opt.apply(g(w, 2), [{ lr: 0.1, weightDecay: 0.5 }]);
    resumed.apply(g(w2, 2), [{ lr: 0.1, weightDecay: 0.5 }]);
    expect(values(w2)).toEqual(values(w));
    expect(values(w)).toEqual(close(naiveAdamW([1, -2], G, 0.1, 0.5).w));
    expect(() => new AdamW([make()]).loadState({ tensors: {}, values: {} })).toThrow(/step counts/);
  });
});
