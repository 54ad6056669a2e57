import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { Lars, learningRate, scheduledLr, scheduledWeightDecay, Sgd } from './sgd.js';

/** The same lr and weight decay for each of n parameters. */
const all = (n: number, lr: number, weightDecay = 0) =>
  Array.from({ length: n }, () => ({ lr, weightDecay }));

describe('SGD with momentum and weight decay (torch.optim.SGD)', () => {
  it('matches hand-computed updates over two steps', () => {
    const w = tf.variable(tf.tensor1d([1, -2]));
    const opt = new Sgd([w], 0.9);
    // step 1: g = [0.5, 0.5] + 0.1 * [1, -2] = [0.6, 0.3]; buf = g; w = [1, -2] - 0.1 * g = [0.94, -2.03]
    opt.apply({ [w.name]: tf.tensor1d([0.5, 0.5]) }, all(1, 0.1, 0.1));
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(0.94, 6), expect.closeTo(-2.03, 6)]);
    // step 2: g = [0.5, 0.5] + 0.1 * w = [0.594, 0.297]; buf = 0.9 * [0.6, 0.3] + g = [1.134, 0.567]
    //         w = w - 0.1 * buf = [0.8266, -2.0867]
    opt.apply({ [w.name]: tf.tensor1d([0.5, 0.5]) }, all(1, 0.1, 0.1));
    expect(Array.from(w.dataSync())).toEqual([
      expect.closeTo(0.8266, 5),
      expect.closeTo(-2.0867, 5),
    ]);
  });

  it('round-trips its momentum buffers and leaks nothing', () => {
    const w = tf.variable(tf.ones([3]));
    const opt = new Sgd([w], 0.9);
    const g = { [w.name]: tf.ones([3]) };
    opt.apply(g, all(1, 1));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) opt.apply(g, all(1, 1));
    expect(tf.memory().numTensors).toBe(before);
    const other = new Sgd([tf.variable(tf.zeros([3]))], 0.9);
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

describe('LARS (MoCo v3 / SimCLR form)', () => {
  it('scales a weight update by eta * ||w|| / ||g + wd w||; biases and BN get plain momentum SGD', () => {
    const w = tf.variable(tf.tensor2d([[3, 4]])); // ||w|| = 5
    const b = tf.variable(tf.tensor1d([1, 1])); // ndim 1: excluded
    const opt = new Lars([w, b], 0.9, 0.001);
    // ||g|| = 1 -> trust 0.001 * 5 / 1 = 0.005 -> update [0.003, 0.004]; lr 1
    opt.apply(
      { [w.name]: tf.tensor2d([[0.6, 0.8]]), [b.name]: tf.tensor1d([0.5, -0.5]) },
      all(2, 1),
    );
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(2.997, 6), expect.closeTo(3.996, 6)]);
    expect(Array.from(b.dataSync())).toEqual([0.5, 1.5]);
    // second step, same gradient: ||w|| = 4.995 -> trust 0.004995; buf = 0.9 * buf + update
    opt.apply(
      { [w.name]: tf.tensor2d([[0.6, 0.8]]), [b.name]: tf.tensor1d([0.5, -0.5]) },
      all(2, 1),
    );
    const t2 = 0.001 * Math.hypot(2.997, 3.996);
    expect(Array.from(w.dataSync())).toEqual([
      expect.closeTo(2.997 - (0.9 * 0.003 + 0.6 * t2), 6),
      expect.closeTo(3.996 - (0.9 * 0.004 + 0.8 * t2), 6),
    ]);
    expect(Array.from(b.dataSync())).toEqual([-0.45, 2.45].map((v) => expect.closeTo(v, 6)));
  });

  it('applies weight decay to weights only, inside the trust ratio', () => {
    const w = tf.variable(tf.tensor2d([[3], [4]]));
    const b = tf.variable(tf.tensor1d([2]));
    const opt = new Lars([w, b], 0, 0.001);
    // g = 0 + 0.1 * w = [0.3, 0.4], ||g|| = 0.5 -> trust 0.001 * 5 / 0.5 = 0.01 -> [0.003, 0.004]
    opt.apply({ [w.name]: tf.zeros([2, 1]), [b.name]: tf.zeros([1]) }, all(2, 1, 0.1));
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(2.997, 6), expect.closeTo(3.996, 6)]);
    expect(Array.from(b.dataSync())).toEqual([2]); // no decay on a bias
  });

  it('leaves a zero weight to the plain gradient (trust ratio 1)', () => {
    const w = tf.variable(tf.zeros([2, 2]));
    const opt = new Lars([w], 0, 0.001);
    opt.apply({ [w.name]: tf.ones([2, 2]) }, all(1, 0.5));
    expect(Array.from(w.dataSync())).toEqual([-0.5, -0.5, -0.5, -0.5]);
  });
});

describe('scheduled learning rate', () => {
  const base = { lr: 0.03, schedule: 'cosine' as const, milestones: [], warmupEpochs: 0 };
  it('step decay x0.1 at each milestone epoch (MoCo v1: 120 and 160 of 200)', () => {
    const o = { ...base, schedule: 'step' as const, milestones: [120, 160] };
    const lr = (epoch: number) => scheduledLr(o, epoch * 10, 2000, 10);
    expect([0, 119, 120, 159, 160, 199].map(lr)).toEqual([
      0.03,
      0.03,
      expect.closeTo(0.003, 12),
      expect.closeTo(0.003, 12),
      expect.closeTo(0.0003, 12),
      expect.closeTo(0.0003, 12),
    ]);
  });

  it('linear warmup to lr, then the cosine over the remaining steps', () => {
    const o = { ...base, warmupEpochs: 2 }; // 20 warmup steps of 10 per epoch; 100 steps in all
    expect(scheduledLr(o, 0, 100, 10)).toBeCloseTo(0.03 / 20, 12);
    expect(scheduledLr(o, 9, 100, 10)).toBeCloseTo(0.015, 12);
    expect(scheduledLr(o, 19, 100, 10)).toBeCloseTo(0.03, 12);
    expect(scheduledLr(o, 20, 100, 10)).toBeCloseTo(0.03, 12); // cosine starts at lr
    expect(scheduledLr(o, 60, 100, 10)).toBeCloseTo(0.015, 12); // half-way through the 80 cosine steps
    expect(scheduledLr({ ...base }, 50, 100, 10)).toBeCloseTo(0.015, 12); // no warmup: unchanged
  });
});

describe('weight-decay schedule (DINO: cosine from wd to wdEnd over all steps)', () => {
  it('is constant without weightDecayEnd, a half cosine with it', () => {
    expect(scheduledWeightDecay({ weightDecay: 0.04 }, 50, 100)).toBe(0.04);
    const o = { weightDecay: 0.04, weightDecayEnd: 0.4 };
    expect(scheduledWeightDecay(o, 0, 100)).toBeCloseTo(0.04, 12);
    expect(scheduledWeightDecay(o, 50, 100)).toBeCloseTo(0.22, 12); // the midpoint
    // a quarter of the way: 0.4 + 0.5 * (0.04 - 0.4) * (1 + cos(pi / 4)) = 0.0927208
    expect(scheduledWeightDecay(o, 25, 100)).toBeCloseTo(0.0927208, 6);
    expect(scheduledWeightDecay(o, 100, 100)).toBeCloseTo(0.4, 12);
  });
});
