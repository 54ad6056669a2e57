import * as tf from '@tensorflow/tfjs';

/**
 * Training-mode BatchNorm on TensorFlow's fused kernels (FusedBatchNormV3 and
 * FusedBatchNormGradV3) when the native backend is active. tfjs otherwise lowers
 * BN and its gradient to a dozen element-wise ops over the whole activation;
 * the fused kernels make one pass each. Falls back to the composite form on
 * other backends. Numerics: identical formula (biased batch variance for the
 * normalisation, Bessel-corrected variance returned for the running statistics).
 */
interface NativeBinding {
  TF_ATTR_TYPE: number;
  TF_ATTR_FLOAT: number;
  TF_ATTR_STRING: number;
  TF_ATTR_BOOL: number;
  TF_FLOAT: number;
}
interface NativeBackend {
  binding: NativeBinding;
  executeMultipleOutputs(
    name: string,
    attrs: unknown[],
    inputs: tf.Tensor[],
    numOutputs: number,
  ): tf.Tensor[];
}

function nativeBackend(): NativeBackend | undefined {
  if (tf.getBackend() !== 'tensorflow') return undefined;
  const b = tf.backend() as unknown as Partial<NativeBackend>;
  return typeof b.executeMultipleOutputs === 'function' && b.binding
    ? (b as NativeBackend)
    : undefined;
}

function attrs(b: NativeBinding, eps: number) {
  return [
    { name: 'T', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
    { name: 'U', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
    { name: 'epsilon', type: b.TF_ATTR_FLOAT, value: eps },
    { name: 'data_format', type: b.TF_ATTR_STRING, value: 'NHWC' },
    { name: 'is_training', type: b.TF_ATTR_BOOL, value: true },
  ];
}

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
  const backend = nativeBackend();
  if (!backend) return compositeBatchNorm(x, gamma, beta, eps);
  let stats: [tf.Tensor1D, tf.Tensor1D] | undefined;
  const empty = tf.tensor1d([]);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, g, b, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const [y, mean, variance, r1, r2, r3] = backend.executeMultipleOutputs(
      'FusedBatchNormV3',
      attrs(backend.binding, eps),
      [xi, g, b, empty, empty],
      6,
    );
    stats = [tf.keep(mean as tf.Tensor1D), tf.keep(variance as tf.Tensor1D)];
    save([xi, g, r1!, r2!, r3!]);
    return {
      value: y!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sg, s1, s2, s3] = saved as [
          tf.Tensor,
          tf.Tensor,
          tf.Tensor,
          tf.Tensor,
          tf.Tensor,
        ];
        const [dx, dg, db] = backend.executeMultipleOutputs(
          'FusedBatchNormGradV3',
          attrs(backend.binding, eps),
          [dy, sx, sg, s1, s2, s3],
          5,
        );
        return [dx!, dg!, db!];
      },
    };
  });
  const y = f(x, gamma, beta) as tf.Tensor4D;
  empty.dispose();
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
