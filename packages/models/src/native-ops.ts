import * as tf from '@tensorflow/tfjs';
import { BackendError } from '@contrast/core';

/**
 * TensorFlow kernels called directly through the native binding, for what the
 * tfjs kernels do not expose: FusedBatchNormV3 and its gradient, convolutions
 * with PyTorch's symmetric (EXPLICIT) padding and their two gradients, ReluGrad
 * and MaxPoolGrad. Only available on the native backend (`nativeBackend()`).
 */
export interface NativeBinding {
  TF_ATTR_TYPE: number;
  TF_ATTR_FLOAT: number;
  TF_ATTR_STRING: number;
  TF_ATTR_BOOL: number;
  TF_ATTR_INT: number;
  TF_FLOAT: number;
}
export interface NativeBackend {
  binding: NativeBinding;
  executeSingleOutput(name: string, attrs: unknown[], inputs: tf.Tensor[]): tf.Tensor;
  executeMultipleOutputs(
    name: string,
    attrs: unknown[],
    inputs: tf.Tensor[],
    numOutputs: number,
  ): tf.Tensor[];
}

export function nativeBackend(): NativeBackend | undefined {
  if (tf.getBackend() !== 'tensorflow') return undefined;
  const b = tf.backend() as unknown as Partial<NativeBackend>;
  return typeof b.executeMultipleOutputs === 'function' &&
    typeof b.executeSingleOutput === 'function' &&
    b.binding
    ? (b as NativeBackend)
    : undefined;
}

function requireNative(): NativeBackend {
  const b = nativeBackend();
  if (!b) {
    throw new BackendError('native TensorFlow kernels need the tensorflow backend', {
      hint: "run 'contrast setup' and 'contrast doctor', or set CONTRAST_AUTODIFF=1 for other backends",
    });
  }
  return b;
}

function floatType(b: NativeBinding) {
  return { name: 'T', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT };
}

/**
 * Padding `pad` on each side as TF's fastest equivalent: VALID for 0, SAME where
 * it is symmetric (stride 1, pad = (k - 1) / 2), else EXPLICIT (whose gradient
 * kernels are about 2x slower here, so Conv pads stride-2 inputs itself).
 */
function paddingMode(k: number, stride: number, pad: number): 'VALID' | 'SAME' | 'EXPLICIT' {
  return pad === 0 ? 'VALID' : stride === 1 && 2 * pad === k - 1 ? 'SAME' : 'EXPLICIT';
}

function convAttrs(b: NativeBinding, k: number, stride: number, pad: number) {
  const padding = paddingMode(k, stride, pad);
  return [
    floatType(b),
    { name: 'strides', type: b.TF_ATTR_INT, value: [1, stride, stride, 1] },
    { name: 'use_cudnn_on_gpu', type: b.TF_ATTR_BOOL, value: true },
    { name: 'padding', type: b.TF_ATTR_STRING, value: padding },
    ...(padding === 'EXPLICIT'
      ? [
          {
            name: 'explicit_paddings',
            type: b.TF_ATTR_INT,
            value: [0, 0, pad, pad, pad, pad, 0, 0],
          },
        ]
      : []),
    { name: 'data_format', type: b.TF_ATTR_STRING, value: 'NHWC' },
    { name: 'dilations', type: b.TF_ATTR_INT, value: [1, 1, 1, 1] },
  ];
}

/** Conv2D, NHWC, HWIO filter, `pad` zeros on each side of H and W (PyTorch's padding). */
export function conv2dExplicit(
  x: tf.Tensor4D,
  w: tf.Tensor4D,
  stride: number,
  pad: number,
): tf.Tensor4D {
  const b = requireNative();
  return b.executeSingleOutput('Conv2D', convAttrs(b.binding, w.shape[0], stride, pad), [
    x,
    w,
  ]) as tf.Tensor4D;
}

/**
 * The gradient of conv2dExplicit with respect to its input. Where the padding is
 * EXPLICIT, the gradient is taken for the zero-padded input (VALID) and the
 * border cut off: the same values, and faster than the EXPLICIT kernel.
 */
export function conv2dGradInput(
  inputShape: readonly number[],
  w: tf.Tensor4D,
  dy: tf.Tensor4D,
  stride: number,
  pad: number,
): tf.Tensor4D {
  const b = requireNative();
  const k = w.shape[0];
  const explicit = paddingMode(k, stride, pad) === 'EXPLICIT';
  const [n, h, wd, c] = inputShape as [number, number, number, number];
  const shape = explicit ? [n, h + 2 * pad, wd + 2 * pad, c] : [n, h, wd, c];
  const sizes = tf.tensor1d(shape, 'int32');
  const dx = b.executeSingleOutput(
    'Conv2DBackpropInput',
    convAttrs(b.binding, k, stride, explicit ? 0 : pad),
    [sizes, w, dy],
  ) as tf.Tensor4D;
  sizes.dispose();
  if (!explicit) return dx;
  const inner = tf.slice(dx, [0, pad, pad, 0], [n, h, wd, c]);
  dx.dispose();
  return inner;
}

/** The gradient of conv2dExplicit with respect to its filter. */
export function conv2dGradFilter(
  x: tf.Tensor4D,
  filterShape: readonly number[],
  dy: tf.Tensor4D,
  stride: number,
  pad: number,
): tf.Tensor4D {
  const b = requireNative();
  const sizes = tf.tensor1d(filterShape as number[], 'int32');
  const dw = b.executeSingleOutput(
    'Conv2DBackpropFilter',
    convAttrs(b.binding, filterShape[0]!, stride, pad),
    [x, sizes, dy],
  ) as tf.Tensor4D;
  sizes.dispose();
  return dw;
}

/** dy * (y > 0) in one pass; `y` is the ReLU's output (or its input). */
export function reluGrad<T extends tf.Tensor>(dy: T, y: T): T {
  const b = requireNative();
  return b.executeSingleOutput('ReluGrad', [floatType(b.binding)], [dy, y]) as T;
}

/** The gradient of a VALID max-pool (window = stride = `size`), routed to each window's maximum. */
export function maxPoolGrad(
  x: tf.Tensor4D,
  y: tf.Tensor4D,
  dy: tf.Tensor4D,
  size: number,
  stride: number,
): tf.Tensor4D {
  const b = requireNative();
  return b.executeSingleOutput(
    'MaxPoolGrad',
    [
      floatType(b.binding),
      { name: 'ksize', type: b.binding.TF_ATTR_INT, value: [1, size, size, 1] },
      { name: 'strides', type: b.binding.TF_ATTR_INT, value: [1, stride, stride, 1] },
      { name: 'padding', type: b.binding.TF_ATTR_STRING, value: 'VALID' },
      { name: 'data_format', type: b.binding.TF_ATTR_STRING, value: 'NHWC' },
    ],
    [x, y, dy],
  ) as tf.Tensor4D;
}

function bnAttrs(b: NativeBinding, eps: number) {
  return [
    floatType(b),
    { name: 'U', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
    { name: 'epsilon', type: b.TF_ATTR_FLOAT, value: eps },
    { name: 'data_format', type: b.TF_ATTR_STRING, value: 'NHWC' },
    { name: 'is_training', type: b.TF_ATTR_BOOL, value: true },
  ];
}

/** What FusedBatchNormV3 returns in training mode. */
export interface FusedBnForward {
  y: tf.Tensor4D;
  /** [C] batch mean. */
  mean: tf.Tensor1D;
  /** [C] Bessel-corrected batch variance (what running statistics follow). */
  unbiasedVariance: tf.Tensor1D;
  /** The kernel's reserve spaces, which its gradient needs. */
  reserve: [tf.Tensor, tf.Tensor, tf.Tensor];
}

export function fusedBatchNormForward(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
): FusedBnForward {
  const b = requireNative();
  const empty = tf.tensor1d([]);
  const [y, mean, variance, r1, r2, r3] = b.executeMultipleOutputs(
    'FusedBatchNormV3',
    bnAttrs(b.binding, eps),
    [x, gamma, beta, empty, empty],
    6,
  );
  empty.dispose();
  return {
    y: y as tf.Tensor4D,
    mean: mean as tf.Tensor1D,
    unbiasedVariance: variance as tf.Tensor1D,
    reserve: [r1!, r2!, r3!],
  };
}

/** FusedBatchNormGradV3: dx, dgamma, dbeta from dy, the input, gamma and the reserve spaces. */
export function fusedBatchNormBackward(
  dy: tf.Tensor,
  x: tf.Tensor,
  gamma: tf.Tensor,
  reserve: readonly tf.Tensor[],
  eps: number,
): { dx: tf.Tensor4D; dgamma: tf.Tensor1D; dbeta: tf.Tensor1D } {
  const b = requireNative();
  const [dx, dgamma, dbeta, r4, r5] = b.executeMultipleOutputs(
    'FusedBatchNormGradV3',
    bnAttrs(b.binding, eps),
    [dy, x, gamma, ...reserve],
    5,
  );
  tf.dispose([r4!, r5!]);
  return { dx: dx as tf.Tensor4D, dgamma: dgamma as tf.Tensor1D, dbeta: dbeta as tf.Tensor1D };
}
