import * as tf from '@tensorflow/tfjs';
import { fusedBatchNormBackward, fusedBatchNormForward, nativeBackend } from './native-ops.js';

/**
 * Training-mode BatchNorm on TensorFlow's fused kernels (FusedBatchNormV3 and
 * FusedBatchNormGradV3) when the native backend is active. tfjs otherwise lowers
 * BN and its gradient to a dozen element-wise ops over the whole activation;
 * the fused kernels make one pass each. Falls back to the composite form on
 * other backends. Numerics: identical formula (biased batch variance for the
 * normalisation, Bessel-corrected variance returned for the running statistics).
 */
export interface BatchNormTrainOutput {
  y: tf.Tensor4D;
  /** [C] batch mean. */
  mean: tf.Tensor1D;
  /** [C] Bessel-corrected batch variance (what running statistics follow). */
  unbiasedVariance: tf.Tensor1D;
}

export function batchNormTraining(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
): BatchNormTrainOutput {
  if (!nativeBackend()) return compositeBatchNorm(x, gamma, beta, eps);
  let stats: [tf.Tensor1D, tf.Tensor1D] | undefined;
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, g, b, save] = args as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
    const out = fusedBatchNormForward(xi, g, b, eps);
    stats = [tf.keep(out.mean), tf.keep(out.unbiasedVariance)];
    save([xi, g, ...out.reserve]);
    return {
      value: out.y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sg, ...reserve] = saved as [tf.Tensor, tf.Tensor, ...tf.Tensor[]];
        const { dx, dgamma, dbeta } = fusedBatchNormBackward(dy, sx, sg, reserve, eps);
        return [dx, dgamma, dbeta];
      },
    };
  });
  const y = f(x, gamma, beta) as tf.Tensor4D;
  const [mean, unbiasedVariance] = stats!;
  // Hand the kept statistics back to the caller's scope so its tidy releases them.
  const out = { y, mean: tf.clone(mean), unbiasedVariance: tf.clone(unbiasedVariance) };
  tf.dispose([mean, unbiasedVariance]);
  return out;
}

/** The same computation in portable ops (any backend). */
export function compositeBatchNorm(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
): BatchNormTrainOutput {
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  const n = x.shape[0] * x.shape[1] * x.shape[2];
  const y = tf.batchNorm4d(x, mean as tf.Tensor1D, variance as tf.Tensor1D, beta, gamma, eps);
  return {
    y,
    mean: mean as tf.Tensor1D,
    unbiasedVariance: (n > 1 ? tf.mul(variance, n / (n - 1)) : variance) as tf.Tensor1D,
  };
}
