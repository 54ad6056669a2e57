import * as tf from '@tensorflow/tfjs';
import type { ContrastEncoder } from '@contrast/models';

/**
 * Gives every BatchNorm non-trivial values (gamma U[0.5, 1.5], beta U[-0.3, 0.3],
 * running mean U[-0.5, 0.5], running variance U[0.5, 2]), seeded, so an export
 * check on a freshly initialised encoder exercises the running statistics
 * (at initialisation they are 0 and 1 and would hide a swapped mean / variance).
 */
export function randomizeBatchNorm(encoder: ContrastEncoder, seed: number): void {
  const ranges: [string, number, number][] = [
    ['/gamma', 0.5, 1.5],
    ['/beta', -0.3, 0.3],
    ['/running_mean', -0.5, 0.5],
    ['/running_var', 0.5, 2],
  ];
  let i = 0;
  for (const [name, v] of encoder.namedVariables()) {
    const r = ranges.find(([suffix]) => name.endsWith(suffix));
    if (!r) continue;
    tf.tidy(() => v.assign(tf.randomUniform(v.shape, r[1], r[2], 'float32', seed + i++)));
  }
}

/** The largest |a - b| over two equally shaped tensors. */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}
