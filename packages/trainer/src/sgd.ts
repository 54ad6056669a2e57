import * as tf from '@tensorflow/tfjs';
import {
  ContractError,
  StateError,
  type Optimizer,
  type ParameterStep,
  type StateTensors,
} from '@contrast/core';

/**
 * SGD with momentum and coupled weight decay, PyTorch's torch.optim.SGD:
 *   g <- grad + wd * w;  buf <- momentum * buf + g;  w <- w - lr * buf
 * (the first step's buf is g, as with a zero-initialised buffer; a frozen
 * parameter's buffer stays zero until its first update, as PyTorch's lazy one).
 */
export class Sgd implements Optimizer {
  protected readonly buffers: tf.Variable[];

  constructor(
    protected readonly params: readonly tf.Variable[],
    readonly momentum: number,
  ) {
    this.buffers = params.map((p) => tf.variable(tf.zerosLike(p), false));
  }

  /** grads as returned by tf.variableGrads (keyed by variable name); `null` steps are skipped. */
  apply(grads: tf.NamedTensorMap, steps: readonly (ParameterStep | null)[]): void {
    tf.tidy(() => {
      this.params.forEach((p, i) => {
        const s = steps[i];
        if (!s) return;
        const grad = gradientOf(grads, p);
        const g = s.weightDecay > 0 ? tf.add(grad, tf.mul(p, s.weightDecay)) : grad;
        const buf = this.buffers[i]!;
        buf.assign(this.momentum > 0 ? tf.add(tf.mul(buf, this.momentum), g) : g);
        p.assign(tf.sub(p, tf.mul(buf, s.lr)));
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

/**
 * LARS as in MoCo v3 / SimCLR: for weights (ndim > 1) the update g + wd * w is
 * scaled by the trust ratio eta * ||w|| / ||g + wd * w|| (1 when either norm
 * is 0); biases and BN scale/offset (ndim 1) get neither weight decay nor
 * adaptation. Then heavy-ball momentum: buf <- m * buf + update; w <- w - lr * buf.
 */
export class Lars extends Sgd {
  constructor(
    params: readonly tf.Variable[],
    momentum: number,
    readonly trustCoefficient = 0.001,
  ) {
    super(params, momentum);
  }

  override apply(grads: tf.NamedTensorMap, steps: readonly (ParameterStep | null)[]): void {
    tf.tidy(() => {
      this.params.forEach((p, i) => {
        const s = steps[i];
        if (!s) return;
        const grad = gradientOf(grads, p);
        let update: tf.Tensor = grad;
        if (p.rank > 1) {
          if (s.weightDecay > 0) update = tf.add(update, tf.mul(p, s.weightDecay));
          const wNorm = tf.norm(p);
          const uNorm = tf.norm(update);
          const ratio = tf.where(
            tf.logicalAnd(tf.greater(wNorm, 0), tf.greater(uNorm, 0)),
            tf.div(tf.mul(wNorm, this.trustCoefficient), uNorm),
            tf.onesLike(wNorm),
          );
          update = tf.mul(update, ratio);
        }
        const buf = this.buffers[i]!;
        buf.assign(this.momentum > 0 ? tf.add(tf.mul(buf, this.momentum), update) : update);
        p.assign(tf.sub(p, tf.mul(buf, s.lr)));
      });
    });
  }
}

/** The gradient of p; a parameter the loss never reached is an error, not a silent skip. */
export function gradientOf(grads: tf.NamedTensorMap, p: tf.Variable): tf.Tensor {
  const grad = grads[p.name];
  if (!grad) {
    throw new ContractError(`parameter ${p.name} received no gradient`, {
      hint: "a method's parameterGroups() must list only variables its objective's loss depends on",
    });
  }
  return grad;
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

/**
 * The lr of step t of T under the config's schedule: an optional linear warmup
 * over the first `warmupEpochs` (from lr / warmup steps up to lr), then constant,
 * half-cycle cosine over the remaining steps (MoCo v2), or step decay x0.1 at
 * each of `milestones` epochs (MoCo v1: 120 and 160 of 200).
 */
export function scheduledLr(
  optim: {
    lr: number;
    schedule: 'cosine' | 'constant' | 'step';
    milestones: number[];
    warmupEpochs: number;
  },
  step: number,
  total: number,
  stepsPerEpoch: number,
): number {
  const warmup = Math.min(total, Math.round(optim.warmupEpochs * stepsPerEpoch));
  if (step < warmup) return (optim.lr * (step + 1)) / warmup;
  if (optim.schedule === 'step') {
    const epoch = step / stepsPerEpoch;
    return optim.lr * 0.1 ** optim.milestones.filter((m) => epoch >= m).length;
  }
  return learningRate(optim.schedule, optim.lr, step - warmup, total - warmup);
}

/**
 * The weight decay of step t of T: constant, or with `weightDecayEnd` a
 * half-cycle cosine from weightDecay to weightDecayEnd over all steps, warmup
 * included (DINO's cosine_scheduler: 0.04 to 0.4).
 */
export function scheduledWeightDecay(
  optim: { weightDecay: number; weightDecayEnd?: number | undefined },
  step: number,
  total: number,
): number {
  const { weightDecay: start, weightDecayEnd: end } = optim;
  if (end === undefined || total <= 0) return start;
  return end + 0.5 * (start - end) * (1 + Math.cos((Math.PI * Math.min(step, total)) / total));
}
