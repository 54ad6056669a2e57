import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { batchNormTraining, compositeBatchNorm } from './native-bn.js';

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
