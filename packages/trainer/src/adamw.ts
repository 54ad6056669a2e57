import * as tf from '@tensorflow/tfjs';
import { StateError, type Optimizer, type ParameterStep, type StateTensors } from '@contrast/core';
import { gradientOf } from './sgd.js';

/**
 * AdamW (Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019)
 * with the semantics of PyTorch's torch.optim.AdamW (amsgrad off), per parameter
 * and step t (counted per parameter from its first update):
 *   w <- w - lr * wd * w                          decoupled decay, before the moments
 *   m <- b1 * m + (1 - b1) * g;   v <- b2 * v + (1 - b2) * g^2
 *   w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * eps is added after the square root of the bias-corrected v. A frozen
 * parameter keeps m, v and t untouched (PyTorch skips a parameter without .grad).
 * Defaults b1 0.9, b2 0.999, eps 1e-8 (PyTorch's, which MoCo v3's ViT recipe keeps; MAE uses b2 0.95).
 */
export class AdamW implements Optimizer {
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];
  /** Updates each parameter has had (PyTorch's per-parameter state['step']). */
  private readonly t: number[];

  constructor(
    private readonly params: readonly tf.Variable[],
    readonly betas: readonly [number, number] = [0.9, 0.999],
    readonly eps = 1e-8,
  ) {
    this.m = params.map((p) => tf.variable(tf.zerosLike(p), false));
    this.v = params.map((p) => tf.variable(tf.zerosLike(p), false));
    this.t = params.map(() => 0);
  }

  apply(grads: tf.NamedTensorMap, steps: readonly (ParameterStep | null)[]): void {
    const [b1, b2] = this.betas;
    tf.tidy(() => {
      this.params.forEach((p, i) => {
        const s = steps[i];
        if (!s) return;
        const g = gradientOf(grads, p);
        const t = ++this.t[i]!;
        const m = this.m[i]!;
        const v = this.v[i]!;
        if (s.weightDecay > 0) p.assign(tf.mul(p, 1 - s.lr * s.weightDecay));
        m.assign(tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1)));
        v.assign(tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2)));
        const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(1 - b2 ** t)), this.eps);
        p.assign(tf.sub(p, tf.mul(tf.div(m, denom), s.lr / (1 - b1 ** t))));
      });
    });
  }

  /** `exp_avg/<i>`, `exp_avg_sq/<i>` (PyTorch's names) and the per-parameter step counts. */
  state(): StateTensors {
    const tensors: Record<string, tf.Tensor> = {};
    this.params.forEach((_, i) => {
      tensors[`exp_avg/${i}`] = this.m[i]!;
      tensors[`exp_avg_sq/${i}`] = this.v[i]!;
    });
    return { tensors, values: { step: [...this.t] } };
  }

  loadState(state: StateTensors): void {
    const steps = state.values.step;
    if (!Array.isArray(steps) || steps.length !== this.params.length) {
      throw new StateError('optimizer state lacks the AdamW step counts', {
        hint: 'resume with the same model config and optim.optimizer: adamw',
      });
    }
    const slot = (name: string, like: tf.Variable) => {
      const t = state.tensors[name];
      if (!t || t.shape.join() !== like.shape.join()) {
        throw new StateError(`optimizer state lacks a matching ${name}`, {
          hint: 'resume with the same model config and optim.optimizer: adamw',
        });
      }
      return t;
    };
    this.params.forEach((_, i) => {
      this.m[i]!.assign(slot(`exp_avg/${i}`, this.m[i]!));
      this.v[i]!.assign(slot(`exp_avg_sq/${i}`, this.v[i]!));
      this.t[i] = steps[i]!;
    });
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}
