import * as tf from '@tensorflow/tfjs';
import type { StateTensors } from './contracts.js';
import { ConfigError, StateError } from './errors.js';
import { l2Normalize } from './math.js';
import type { Rng } from './rng.js';

/**
 * k indices drawn uniformly from [0, n), excluding `exclude` (rejection sampling;
 * draws are with replacement, as InstDisc's AliasMethod does).
 */
export function sampleIndices(
  rng: Rng,
  n: number,
  k: number,
  exclude?: ArrayLike<number>,
): Int32Array {
  const banned = exclude && exclude.length > 0 ? new Set(Array.from(exclude)) : undefined;
  if (banned && banned.size >= n)
    throw new ConfigError('strategy.negatives', `all ${n} rows are excluded`);
  const out = new Int32Array(k);
  for (let i = 0; i < k; i++) {
    let j = rng.int(n);
    while (banned?.has(j)) j = rng.int(n);
    out[i] = j;
  }
  return out;
}

/**
 * InstDisc's memory bank: one row per training sample.
 * - init: uniform in [-s, s], s = 1 / sqrt(D / 3) (so rows have unit norm on average);
 * - read: rows by sample index (positives) or sampled indices (negatives);
 * - write after the step: v_i <- normalise(m v_i + (1 - m) f_i), m = 0.5 in InstDisc.
 */
export class MemoryBank {
  private readonly bank: tf.Variable<tf.Rank.R2>;

  constructor(
    readonly size: number,
    readonly dim: number,
    rng: Rng,
  ) {
    if (!Number.isInteger(size) || size < 1)
      throw new ConfigError('data', `a memory bank needs samples, got ${size}`);
    const s = 1 / Math.sqrt(dim / 3);
    this.bank = tf.variable(
      tf.tensor2d(rng.uniformArray(size * dim, -s, s), [size, dim]),
      false,
    ) as tf.Variable<tf.Rank.R2>;
  }

  /** [N, D]: do not dispose. */
  get rows(): tf.Tensor2D {
    return this.bank;
  }

  gather(indices: tf.Tensor1D | Int32Array): tf.Tensor2D {
    return tf.tidy(() =>
      tf.gather(this.bank, indices instanceof Int32Array ? tf.tensor1d(indices, 'int32') : indices),
    );
  }

  /** Rewrites rows `indices` with normalise(m * old + (1 - m) * features); indices must be distinct. */
  update(indices: tf.Tensor1D, features: tf.Tensor2D, momentum: number): void {
    tf.tidy(() => {
      const old = tf.gather(this.bank, indices);
      const mixed = l2Normalize(tf.add(tf.mul(old, momentum), tf.mul(features, 1 - momentum)));
      this.bank.assign(
        tf.tensorScatterUpdate(this.bank, tf.expandDims(indices, 1), mixed) as tf.Tensor2D,
      );
    });
  }

  state(): StateTensors {
    return { tensors: { bank: this.bank }, values: {} };
  }

  loadState(state: StateTensors): void {
    const b = state.tensors.bank;
    if (!b || b.shape[0] !== this.size || b.shape[1] !== this.dim) {
      throw new StateError(
        `saved bank has shape [${b?.shape.join(', ') ?? 'missing'}], expected [${this.size}, ${this.dim}]`,
        {
          hint: 'resume on the same dataset (and data.trainSubset) with the same model.dim',
        },
      );
    }
    this.bank.assign(b as tf.Tensor2D);
  }

  dispose(): void {
    this.bank.dispose();
  }
}
