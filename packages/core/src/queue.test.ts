import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { KeyQueue } from './queue.js';
import { Rng } from './rng.js';

/** Keys whose first coordinate is an id, so rows can be traced. */
const keys = (...ids: number[]) => tf.tensor2d(ids.map((i) => [i, 0]));
const firstColumn = (q: KeyQueue) => (q.keys.arraySync() as number[][]).map((r) => r[0]);

describe('KeyQueue (FIFO)', () => {
  it('starts with random L2-normalised rows and the pointer at 0', () => {
    const q = new KeyQueue(6, 4, new Rng(0));
    const norms = tf.norm(q.keys, 'euclidean', 1).arraySync() as number[];
    norms.forEach((n) => expect(n).toBeCloseTo(1, 5));
    expect(q.ptr).toBe(0);
  });

  it('enqueues in order and wraps around, step by step (K = 5, batch 2)', () => {
    const q = new KeyQueue(5, 2, new Rng(0));
    q.enqueue(keys(1, 2));
    expect(q.ptr).toBe(2);
    expect(firstColumn(q).slice(0, 2)).toEqual([1, 2]);
    q.enqueue(keys(3, 4));
    expect(q.ptr).toBe(4);
    q.enqueue(keys(5, 6)); // 5 -> row 4, 6 wraps to row 0 (overwrites the oldest, 1)
    expect(q.ptr).toBe(1);
    expect(firstColumn(q)).toEqual([6, 2, 3, 4, 5]);
    q.enqueue(keys(7, 8));
    expect(q.ptr).toBe(3);
    expect(firstColumn(q)).toEqual([6, 7, 8, 4, 5]);
  });

  it('handles a ragged batch and K not a multiple of the batch', () => {
    const q = new KeyQueue(7, 2, new Rng(0));
    q.enqueue(keys(1, 2, 3));
    q.enqueue(keys(4, 5, 6));
    q.enqueue(keys(7)); // ragged last batch of 1
    expect(q.ptr).toBe(0);
    expect(firstColumn(q)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    q.enqueue(keys(8, 9, 10));
    expect(firstColumn(q)).toEqual([8, 9, 10, 4, 5, 6, 7]);
  });

  it('keeps the last K keys of a batch larger than the queue', () => {
    const q = new KeyQueue(3, 2, new Rng(0));
    q.enqueue(keys(1));
    q.enqueue(keys(2, 3, 4, 5, 6)); // sequentially: rows 1,2,0,1,2 <- 2,3,4,5,6
    expect(q.ptr).toBe(0);
    expect(firstColumn(q)).toEqual([4, 5, 6]);
  });

  it('round-trips its state and refuses a mismatched one', () => {
    const a = new KeyQueue(4, 2, new Rng(1));
    a.enqueue(keys(9, 8, 7));
    const b = new KeyQueue(4, 2, new Rng(2));
    b.loadState(a.state());
    expect(b.ptr).toBe(3);
    expect(b.keys.arraySync()).toEqual(a.keys.arraySync());
    const c = new KeyQueue(5, 2, new Rng(2));
    expect(() => c.loadState(a.state())).toThrow(/shape \[4, 2\], expected \[5, 2\]/);
  });

  it('does not leak tensors on enqueue', () => {
    const q = new KeyQueue(16, 4, new Rng(0));
    const batch = tf.ones([3, 4]) as tf.Tensor2D;
    q.enqueue(batch);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) q.enqueue(batch);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects a non-positive size with a coded error', () => {
    expect(() => new KeyQueue(0, 2, new Rng(0))).toThrow(
      expect.objectContaining({ code: 'CONTRAST_CONFIG' }),
    );
  });
});
