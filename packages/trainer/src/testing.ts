import type * as tf from '@tensorflow/tfjs';

/**
 * Small helpers for method tests: copy variables' values, compare copies.
 * (Host reads: for tests, never for a training step.)
 */

/** The current values of `vars`, copied to the host. */
export function snapshotVariables(vars: readonly tf.Variable[]): Float32Array[] {
  return vars.map((v) => Float32Array.from(v.dataSync()));
}

/** The largest absolute element-wise difference between two snapshots of the same variables. */
export function maxAbsDiff(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let worst = 0;
  a.forEach((x, i) => x.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - b[i]![j]!)))));
  return worst;
}
