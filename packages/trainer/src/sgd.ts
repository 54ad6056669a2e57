import * as tf from '@tensorflow/tfjs';
import { StateError, type StateTensors } from '@contrast/core';

/**
 * SGD with momentum and coupled weight decay, PyTorch's torch.optim.SGD:
 *   g <- grad + wd * w;  buf <- momentum * buf + g;  w <- w - lr * buf
 * (the first step's buf is g, as with a zero-initialised buffer).
 */
export class Sgd {
  private readonly buffers: tf.Variable[];

  constructor(
    private readonly params: readonly tf.Variable[],
    readonly momentum: number,
    readonly weightDecay: number,
  ) {
    this.buffers = params.map((p) => tf.variable(tf.zerosLike(p), false));
  }

  /** grads as returned by tf.variableGrads (keyed by variable name). */
  apply(grads: tf.NamedTensorMap, lr: number): void {
    tf.tidy(() => {
      this.params.forEach((p, i) => {
        const grad = grads[p.name];
        if (!grad) throw new Error(`no gradient for parameter ${p.name}`);
        const g = this.weightDecay > 0 ? tf.add(grad, tf.mul(p, this.weightDecay)) : grad;
        const buf = this.buffers[i]!;
        buf.assign(this.momentum > 0 ? tf.add(tf.mul(buf, this.momentum), g) : g);
        p.assign(tf.sub(p, tf.mul(buf, lr)));
      });
    });
  }

  state(): StateTensors {
    return {
      tensors: Object.fromEntries(this.buffers.map((b, i) => [`momentum_buffer/${i}`, b])),
      values: {},
    };
  }

  loadState(state: StateTensors): void {
    this.buffers.forEach((b, i) => {
      const t = state.tensors[`momentum_buffer/${i}`];
      if (!t || t.shape.join() !== b.shape.join()) {
        throw new StateError(`optimizer state lacks a matching momentum_buffer/${i}`, {
          hint: 'resume with the same model config',
        });
      }
      b.assign(t);
    });
  }

  dispose(): void {
    tf.dispose(this.buffers);
  }
}

/** Learning rate at step t of T: constant, or a half-cycle cosine from lr to 0 (MoCo v2). */
export function learningRate(
  schedule: 'cosine' | 'constant',
  base: number,
  step: number,
  total: number,
): number {
  if (schedule === 'constant' || total <= 0) return base;
  return base * 0.5 * (1 + Math.cos((Math.PI * Math.min(step, total)) / total));
}
