import * as tf from '@tensorflow/tfjs';
import { ContractError } from '@contrast/core';

/**
 * A hand-written backward pass for the backbones, run as one tfjs custom
 * gradient. tfjs's own tape keeps every intermediate and every activation
 * gradient alive until the whole backward pass ends; here each layer saves only
 * what its gradient needs (a conv its input, BN its input and reserve spaces, a
 * ReLU its output), each saved activation is released by its last user during
 * the backward pass, and each activation gradient as soon as the layer below has
 * consumed it. The kernels are the same TensorFlow kernels tfjs's gradients use
 * (Conv2DBackpropInput/Filter, FusedBatchNormGradV3, ReluGrad, MaxPoolGrad).
 */
export class BackwardTape {
  private readonly pending: tf.Tensor[] = [];
  private readonly index = new Map<tf.Tensor, number>();
  private readonly uses: number[] = [];
  private saved: tf.Tensor[] = [];
  /** Parameter gradients, accumulated as the backward pass reaches each layer. */
  readonly grads = new Map<tf.Variable, tf.Tensor>();

  /** Registers one backward use of `t` (forward); returns its handle. */
  save(t: tf.Tensor): number {
    let i = this.index.get(t);
    if (i === undefined) {
      i = this.pending.length;
      this.pending.push(t);
      this.index.set(t, i);
      this.uses.push(0);
    }
    this.uses[i]!++;
    return i;
  }

  /** What the custom gradient must save (forward's end). */
  get toSave(): tf.Tensor[] {
    return this.pending;
  }

  /** Starts the backward pass with the saved copies (same order as toSave). */
  begin(saved: tf.Tensor[]): void {
    this.saved = saved;
  }

  get(i: number): tf.Tensor {
    const t = this.saved[i];
    if (!t || t.isDisposed) {
      throw new ContractError(`backward: saved tensor ${i} is not available`, {
        hint: 'a layer freed a saved activation before its last use (CONTRAST_AUTODIFF=1 bypasses the hand-written backward)',
      });
    }
    return t;
  }

  /** Ends one use of a saved tensor; the last use frees it. */
  release(...handles: number[]): void {
    for (const i of handles) {
      if (--this.uses[i]! === 0) this.saved[i]?.dispose();
    }
  }

  addGrad(v: tf.Variable, g: tf.Tensor): void {
    const prev = this.grads.get(v);
    if (!prev) {
      this.grads.set(v, g);
      return;
    }
    this.grads.set(v, tf.add(prev, g));
    tf.dispose([prev, g]);
  }
}

/** A layer's backward: dL/dy -> dL/dx (undefined when the input needs no gradient). */
export type Backward = (dy: tf.Tensor4D, needDx: boolean) => tf.Tensor4D | undefined;

/** A training-mode forward step and its backward. */
export interface Traced<T extends tf.Tensor = tf.Tensor4D> {
  y: T;
  back: (dy: T, needDx: boolean) => tf.Tensor4D | undefined;
}

/**
 * Runs backwards through `steps` (in forward order), freeing each intermediate
 * gradient once the next step has consumed it; `dy` itself is left to the caller.
 */
export function backThrough(
  steps: readonly Backward[],
  dy: tf.Tensor4D,
  needDx: boolean,
): tf.Tensor4D | undefined {
  let d: tf.Tensor4D | undefined = dy;
  for (let i = steps.length - 1; i >= 0; i--) {
    const next: tf.Tensor4D | undefined = steps[i]!(d!, i > 0 || needDx);
    if (d !== dy) d!.dispose();
    d = next;
  }
  return d;
}
