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
 * The distinct values of `indices` in order of first appearance, each entry's
 * position among them (`segment`), and how often each occurs (`counts`).
 */
function distinctRows(indices: Int32Array): {
  unique: Int32Array;
  segment: Int32Array;
  counts: Float32Array;
} {
  const position = new Map<number, number>();
  const segment = new Int32Array(indices.length);
  const unique: number[] = [];
  const counts: number[] = [];
  indices.forEach((row, i) => {
    let p = position.get(row);
    if (p === undefined) {
      p = unique.length;
      position.set(row, p);
      unique.push(row);
      counts.push(0);
    }
    counts[p]! += 1;
    segment[i] = p;
  });
  return { unique: Int32Array.from(unique), segment, counts: Float32Array.from(counts) };
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

  /**
   * Rewrites rows `indices` with normalise(m * old + (1 - m) * f), f the row's
   * features [M, D]. A row named more than once in a step (a two-way loss passes
   * every sample twice, once per view) is written once, with f the mean of its
   * features: one EMA step of m towards the mean of the views, as if the bank
   * stored one feature per sample and step (InstDisc writes one view). Rows
   * named once are written exactly as before (no averaging arithmetic).
   * `indices` on the host avoids a device read; a tensor is read once.
   */
  update(indices: Int32Array | tf.Tensor1D, features: tf.Tensor2D, momentum: number): void {
    const host = indices instanceof Int32Array ? indices : (indices.dataSync() as Int32Array);
    const rows = distinctRows(host);
    tf.tidy(() => {
      const f =
        rows.unique.length === host.length
          ? features
          : tf.div(
              tf.unsortedSegmentSum(
                features,
                tf.tensor1d(rows.segment, 'int32'),
                rows.unique.length,
              ),
              tf.tensor2d(rows.counts, [rows.unique.length, 1]),
            );
      const at = tf.tensor1d(rows.unique, 'int32');
      const old = tf.gather(this.bank, at);
      const mixed = l2Normalize(tf.add(tf.mul(old, momentum), tf.mul(f, 1 - momentum)));
      this.bank.assign(
        tf.tensorScatterUpdate(this.bank, tf.expandDims(at, 1), mixed) as tf.Tensor2D,
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
