import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { learningRate, Sgd } from './sgd.js';

describe('SGD with momentum and weight decay (torch.optim.SGD)', () => {
  it('matches hand-computed updates over two steps', () => {
    const w = tf.variable(tf.tensor1d([1, -2]));
    const opt = new Sgd([w], 0.9, 0.1);
    // step 1: g = [0.5, 0.5] + 0.1 * [1, -2] = [0.6, 0.3]; buf = g; w = [1, -2] - 0.1 * g = [0.94, -2.03]
    opt.apply({ [w.name]: tf.tensor1d([0.5, 0.5]) }, 0.1);
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(0.94, 6), expect.closeTo(-2.03, 6)]);
    // step 2: g = [0.5, 0.5] + 0.1 * w = [0.594, 0.297]; buf = 0.9 * [0.6, 0.3] + g = [1.134, 0.567]
    //         w = w - 0.1 * buf = [0.8266, -2.0867]
    opt.apply({ [w.name]: tf.tensor1d([0.5, 0.5]) }, 0.1);
    expect(Array.from(w.dataSync())).toEqual([
      expect.closeTo(0.8266, 5),
      expect.closeTo(-2.0867, 5),
    ]);
  });

  it('round-trips its momentum buffers and leaks nothing', () => {
    const w = tf.variable(tf.ones([3]));
    const opt = new Sgd([w], 0.9, 0);
    const g = { [w.name]: tf.ones([3]) };
    opt.apply(g, 1);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) opt.apply(g, 1);
    expect(tf.memory().numTensors).toBe(before);
    const other = new Sgd([tf.variable(tf.zeros([3]))], 0.9, 0);
    other.loadState(opt.state());
    expect(other.state().tensors['momentum_buffer/0']!.arraySync()).toEqual(
      opt.state().tensors['momentum_buffer/0']!.arraySync(),
    );
  });
});

describe('learning-rate schedule', () => {
  it('cosine goes lr -> lr/2 -> 0 over the run', () => {
    expect(learningRate('cosine', 0.06, 0, 100)).toBeCloseTo(0.06, 10);
    expect(learningRate('cosine', 0.06, 50, 100)).toBeCloseTo(0.03, 10);
    expect(learningRate('cosine', 0.06, 100, 100)).toBeCloseTo(0, 10);
    expect(learningRate('constant', 0.06, 50, 100)).toBe(0.06);
  });
});
