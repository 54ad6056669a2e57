import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { Rng } from '@contrast/core';
import { BatchNorm } from './layers.js';
import { batchNormTraining, compositeBatchNorm } from './native-bn.js';
import { ParamStore } from './params.js';

describe('fused training-mode BatchNorm', () => {
  it('runs on the native backend here', () => {
    expect(tf.getBackend()).toBe('tensorflow');
  });

  it('matches the composite form in value, statistics and all three gradients', () => {
    const x = tf.randomNormal([6, 5, 4, 3], 1, 2, 'float32', 11) as tf.Tensor4D;
    const gamma = tf.tensor1d([0.5, 1.5, -1]);
    const beta = tf.tensor1d([0.1, 0, -0.2]);
    const w = tf.randomNormal([6, 5, 4, 3], 0, 1, 'float32', 12); // makes the loss's dy non-uniform
    const lossOf = (impl: typeof batchNormTraining) => (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
      tf.sum(
        tf.mul(tf.square(impl(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, 1e-5).y), w),
      ) as tf.Scalar;
    const fused = batchNormTraining(x, gamma, beta, 1e-5);
    const ref = compositeBatchNorm(x, gamma, beta, 1e-5);
    const close = (a: tf.Tensor, b: tf.Tensor) =>
      expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeLessThan(1e-4);
    close(fused.y, ref.y);
    close(fused.mean, ref.mean);
    close(fused.unbiasedVariance, ref.unbiasedVariance);
    const gf = tf.grads(lossOf(batchNormTraining))([x, gamma, beta]);
    const gr = tf.grads(lossOf(compositeBatchNorm))([x, gamma, beta]);
    gf.forEach((g, i) => close(g, gr[i]!));
  });

  it('leaks no tensors inside a tidy', () => {
    const x = tf.randomNormal([4, 3, 3, 2]) as tf.Tensor4D;
    const g = tf.ones([2]) as tf.Tensor1D;
    const b = tf.zeros([2]) as tf.Tensor1D;
    tf.tidy(() => batchNormTraining(x, g, b, 1e-5).y);
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      batchNormTraining(x, g, b, 1e-5);
    });
    tf.grads((a: tf.Tensor) => tf.sum(batchNormTraining(a as tf.Tensor4D, g, b, 1e-5).y))([
      x,
    ]).forEach((t) => t.dispose());
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('SplitBatchNorm (model.bnSplits)', () => {
  it('normalises each sub-batch with its own statistics and averages them into the running ones', () => {
    const store = new ParamStore(true, new Rng(0));
    store.bnSplits = 2;
    const bn = new BatchNorm(store, 'bn', 2, 0.1, 0);
    bn.gamma.assign(tf.tensor1d([2, 1]));
    bn.beta.assign(tf.tensor1d([0, 1]));
    // 4 samples of 1x1 pixels, 2 channels; split 0 = samples 0-1, split 1 = samples 2-3
    const v = [
      [1, 10],
      [3, 10],
      [0, 4],
      [4, 8],
    ];
    const x = tf.tensor4d(v.flat(), [4, 1, 1, 2]);
    const y = bn.apply(x, true).arraySync() as number[][][][];
    // by hand: split 0, channel 0: mean 2, var 1 -> (1-2)/1 * 2 = -2, (3-2) * 2 = 2
    //          split 0, channel 1: mean 10, var 0 -> eps 0 gives 0/0; skip; split 1, channel 1: mean 6, var 4
    //          split 1, channel 0: mean 2, var 4 -> (0-2)/2 * 2 = -2, (4-2)/2 * 2 = 2
    expect(y[0]![0]![0]![0]).toBeCloseTo(-2, 5);
    expect(y[1]![0]![0]![0]).toBeCloseTo(2, 5);
    expect(y[2]![0]![0]![0]).toBeCloseTo(-2, 5);
    expect(y[3]![0]![0]![0]).toBeCloseTo(2, 5);
    expect(y[2]![0]![0]![1]).toBeCloseTo((4 - 6) / 2 + 1, 5);
    expect(y[3]![0]![0]![1]).toBeCloseTo((8 - 6) / 2 + 1, 5);
    // a plain BN over the whole batch would give channel 0 mean 2, var 2.5: not what we got
    expect(y[0]![0]![0]![0]).not.toBeCloseTo(((1 - 2) / Math.sqrt(2.5)) * 2, 2);
    // running stats: momentum 0.1 toward the mean over splits of (mean, unbiased var)
    // channel 0: means 2, 2 -> 2; unbiased vars 2, 8 -> 5; channel 1: means 10, 6 -> 8; vars 0, 8 -> 4
    expect(Array.from(bn.runningMean.dataSync())).toEqual([
      expect.closeTo(0.2, 6),
      expect.closeTo(0.8, 6),
    ]);
    expect(Array.from(bn.runningVar.dataSync())).toEqual([
      expect.closeTo(0.9 + 0.5, 6),
      expect.closeTo(0.9 + 0.4, 6),
    ]);
    x.dispose();
    store.dispose();
  });

  it('refuses a batch that does not divide into the splits, naming the field', () => {
    const store = new ParamStore(true, new Rng(0));
    store.bnSplits = 3;
    const bn = new BatchNorm(store, 'bn', 1);
    const x = tf.ones([4, 1, 1, 1]) as tf.Tensor4D;
    expect(() => bn.apply(x, true)).toThrow(/model.bnSplits/);
    x.dispose();
    store.dispose();
  });
});
