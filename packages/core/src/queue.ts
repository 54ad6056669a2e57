import * as tf from '@tensorflow/tfjs';
import { ConfigError, ContractError, StateError } from './errors.js';
import type { StateTensors } from './contracts.js';
import { l2Normalize } from './math.js';
import type { Rng } from './rng.js';

/**
 * MoCo's dictionary: a FIFO queue of K keys of width D.
 *
 * Semantics, step by step:
 * - `keys` is read inside the gradient tape (a snapshot: the loss sees the queue
 *   as it was before this batch); `enqueue` runs after the optimizer step.
 * - enqueue writes the batch at rows ptr, ptr+1, ... (mod K) and advances ptr by
 *   the batch size (mod K): the oldest keys are overwritten first, wrap-around included.
 * - Any batch size works (ragged last batches, K not a multiple of the batch).
 *   A batch larger than K leaves exactly its last K keys, as sequential enqueueing would.
 * - Initial contents: random normal rows, L2-normalised (as in the official code).
 */
export class KeyQueue {
  private readonly queue: tf.Variable<tf.Rank.R2>;
  private pointer = 0;

  constructor(
    readonly size: number,
    readonly dim: number,
    rng: Rng,
  ) {
    if (!Number.isInteger(size) || size < 1) {
      throw new ConfigError('strategy.queueSize', `must be a positive integer, got ${size}`);
    }
    this.queue = tf.tidy(() =>
      tf.variable(
        l2Normalize(tf.tensor2d(rng.normalArray(size * dim), [size, dim])),
        false,
        undefined,
        'float32',
      ),
    ) as tf.Variable<tf.Rank.R2>;
  }

  /** [K, D]: the queue as it is now. Do not dispose. */
  get keys(): tf.Tensor2D {
    return this.queue;
  }

  get ptr(): number {
    return this.pointer;
  }

  /** Rows written by the next enqueue of `batch` keys (for tests and tracing). */
  slotsFor(batch: number): Int32Array {
    const n = Math.min(batch, this.size);
    const skip = batch - n;
    const slots = new Int32Array(n);
    for (let j = 0; j < n; j++) slots[j] = (this.pointer + skip + j) % this.size;
    return slots;
  }

  /** Enqueue keys [B, D] (dequeuing the oldest B). */
  enqueue(keys: tf.Tensor2D): void {
    const [b, d] = keys.shape;
    if (d !== this.dim) {
      throw new ContractError(`enqueue: keys have width ${d}, the queue holds width ${this.dim}`, {
        hint: 'enqueue the embeddings the queue was built for (model.dim)',
      });
    }
    if (b === 0) return;
    const slots = this.slotsFor(b);
    tf.tidy(() => {
      const rows = b > this.size ? keys.slice([b - this.size, 0], [this.size, d]) : keys;
      const idx = tf.tensor2d(slots, [slots.length, 1], 'int32');
      this.queue.assign(tf.tensorScatterUpdate(this.queue, idx, rows) as tf.Tensor2D);
    });
    this.pointer = (this.pointer + b) % this.size;
  }

  state(): StateTensors {
    return { tensors: { queue: this.queue }, values: { ptr: this.pointer } };
  }

  loadState(state: StateTensors): void {
    const q = state.tensors.queue;
    const ptr = state.values.ptr;
    if (!q || q.shape.length !== 2 || q.shape[0] !== this.size || q.shape[1] !== this.dim) {
      throw new StateError(
        `saved queue has shape [${q?.shape.join(', ') ?? 'missing'}], expected [${this.size}, ${this.dim}]`,
        { hint: 'resume with the same strategy.queueSize and model.dim as the saved run' },
      );
    }
    if (typeof ptr !== 'number' || ptr < 0 || ptr >= this.size) {
      throw new StateError(`saved queue pointer ${String(ptr)} is out of range [0, ${this.size})`);
    }
    this.queue.assign(q as tf.Tensor2D);
    this.pointer = ptr;
  }

  dispose(): void {
    this.queue.dispose();
  }
}
