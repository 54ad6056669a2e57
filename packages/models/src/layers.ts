import { ConfigError } from '@contrast/core';
import * as tf from '@tensorflow/tfjs';
import type { BackwardTape, Traced } from './backward.js';
import { batchNormTraining } from './native-bn.js';
import {
  conv2dExplicit,
  conv2dGradFilter,
  conv2dGradInput,
  fusedBatchNormBackward,
  fusedBatchNormForward,
  maxPoolGrad,
  reluGrad,
} from './native-ops.js';
import type { ParamStore } from './params.js';

/**
 * One eval-mode operation of a network, for exporters (tf.layers, torchvision
 * names): what `apply(x, false)` computes, in order, with the variable-name
 * prefixes it reads. `residual` is relu(main(x) + shortcut(x)), an empty
 * shortcut being the identity. `maxpool` pads with -inf (PyTorch's), `pool`
 * is the global average over H and W.
 */
export type ArchNode =
  | {
      kind: 'conv';
      name: string;
      kernel: number;
      filters: number;
      stride: number;
      pad: number;
      /** Computed as TF's 'same' (stride 1, symmetric padding), else explicit padding + 'valid'. */
      same: boolean;
    }
  | { kind: 'bn'; name: string; eps: number }
  | { kind: 'relu' }
  | { kind: 'maxpool'; size: number; stride: number; pad: number }
  | { kind: 'residual'; main: ArchNode[]; shortcut: ArchNode[] }
  | { kind: 'pool' }
  | { kind: 'dense'; name: string; units: number };

/**
 * Convolution with PyTorch's symmetric padding: TF's 'same' pads 0 before and
 * 1 after on stride-2 convs; explicit padding + 'valid' matches torch exactly.
 */
export class Conv {
  readonly w: tf.Variable;
  constructor(
    store: ParamStore,
    /** Prefix of the variable names (`<name>/w`). */
    readonly name: string,
    readonly k: number,
    cin: number,
    readonly cout: number,
    readonly stride: number,
    readonly pad: number,
  ) {
    this.w = store.conv(`${name}/w`, k, cin, cout);
  }

  /** PyTorch's padding expressed in TF's terms: 'same' only where it is symmetric. */
  get sameForm(): boolean {
    return this.stride === 1 && this.pad * 2 === this.k - 1;
  }

  describe(): ArchNode {
    const { name, k, cout, stride, pad } = this;
    return { kind: 'conv', name, kernel: k, filters: cout, stride, pad, same: this.sameForm };
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    if (this.sameForm) {
      return tf.conv2d(x, this.w as tf.Tensor4D, 1, 'same');
    }
    const p = this.pad;
    const xp =
      p > 0
        ? tf.pad(x, [
            [0, 0],
            [p, p],
            [p, p],
            [0, 0],
          ])
        : x;
    return tf.conv2d(xp, this.w as tf.Tensor4D, this.stride, 'valid');
  }

  /** Training forward with a hand-written backward (native backend): saves its input. */
  train(x: tf.Tensor4D, tape: BackwardTape): Traced {
    const { stride, pad } = this;
    const w = this.w as tf.Tensor4D;
    const xi = tape.save(x);
    return {
      y: conv2dExplicit(x, w, stride, pad),
      back: (dy, needDx) => {
        const xs = tape.get(xi) as tf.Tensor4D;
        tape.addGrad(this.w, conv2dGradFilter(xs, w.shape, dy, stride, pad));
        const dx = needDx ? conv2dGradInput(xs.shape, w, dy, stride, pad) : undefined;
        tape.release(xi);
        return dx;
      },
    };
  }
}

/** ReLU whose backward needs only its output. */
export function reluTrain(x: tf.Tensor4D, tape: BackwardTape): Traced {
  const y = tf.relu(x);
  const yi = tape.save(y);
  return {
    y,
    back: (dy) => {
      const dx = reluGrad(dy, tape.get(yi) as tf.Tensor4D);
      tape.release(yi);
      return dx;
    },
  };
}

/** VALID max-pool (window = stride = size) with its backward; `padValue` pads first when pad > 0. */
export function maxPoolTrain(
  x: tf.Tensor4D,
  tape: BackwardTape,
  size: number,
  stride: number,
  pad = 0,
): Traced {
  const padding: [number, number][] = [
    [0, 0],
    [pad, pad],
    [pad, pad],
    [0, 0],
  ];
  const xp = pad > 0 ? tf.pad(x, padding, -Infinity) : x;
  const y = tf.maxPool(xp, size, stride, 'valid');
  const xi = tape.save(xp);
  const yi = tape.save(y);
  return {
    y,
    back: (dy) => {
      const xs = tape.get(xi) as tf.Tensor4D;
      let dx = maxPoolGrad(xs, tape.get(yi) as tf.Tensor4D, dy, size, stride);
      tape.release(xi, yi);
      if (pad > 0) {
        const [n, h, w, c] = dx.shape;
        const inner = tf.slice(dx, [0, pad, pad, 0], [n, h - 2 * pad, w - 2 * pad, c]);
        dx.dispose();
        dx = inner;
      }
      return dx;
    },
  };
}

/** Global average pooling over H, W with its backward. */
export function meanPoolTrain(x: tf.Tensor4D): {
  y: tf.Tensor2D;
  back: (dy: tf.Tensor2D) => tf.Tensor4D;
} {
  const [n, h, w, c] = x.shape;
  return {
    y: tf.mean(x, [1, 2]),
    back: (dy) =>
      tf.tidy(() =>
        tf.broadcastTo(tf.reshape(tf.div(dy, h * w), [n, 1, 1, c]), [n, h, w, c]),
      ) as tf.Tensor4D,
  };
}

/**
 * BatchNorm over N, H, W (PyTorch semantics): batch statistics in training mode,
 * running statistics in eval mode; running stats follow momentum 0.1 with the
 * unbiased batch variance.
 */
export class BatchNorm {
  readonly gamma: tf.Variable;
  readonly beta: tf.Variable;
  readonly runningMean: tf.Variable;
  readonly runningVar: tf.Variable;
  /** Training-mode sub-batches normalised separately (MoCo's SplitBatchNorm); 1 = plain BN. */
  readonly splits: number;

  constructor(
    store: ParamStore,
    /** Prefix of the variable names (`<name>/gamma`, ...). */
    readonly name: string,
    channels: number,
    readonly momentum = 0.1,
    readonly eps = 1e-5,
    /** false: scale 1 and offset 0, fixed (PyTorch's affine=False; SimSiam's output BN). */
    affine = true,
  ) {
    this.splits = store.bnSplits;
    const make = affine ? store.param.bind(store) : store.buffer.bind(store);
    this.gamma = make(`${name}/gamma`, [channels], 1);
    this.beta = make(`${name}/beta`, [channels], 0);
    this.runningMean = store.buffer(`${name}/running_mean`, [channels], 0);
    this.runningVar = store.buffer(`${name}/running_var`, [channels], 1);
  }

  describe(): ArchNode {
    return { kind: 'bn', name: this.name, eps: this.eps };
  }

  apply(x: tf.Tensor4D, training: boolean): tf.Tensor4D {
    if (!training) {
      return tf.batchNorm4d(
        x,
        this.runningMean as tf.Tensor1D,
        this.runningVar as tf.Tensor1D,
        this.beta as tf.Tensor1D,
        this.gamma as tf.Tensor1D,
        this.eps,
      );
    }
    const { y, mean, unbiasedVariance } =
      this.splits > 1
        ? this.splitTraining(x)
        : batchNormTraining(x, this.gamma as tf.Tensor1D, this.beta as tf.Tensor1D, this.eps);
    this.updateRunning(mean, unbiasedVariance);
    tf.dispose([mean, unbiasedVariance]);
    return y;
  }

  /** Training forward with the fused kernels and a hand-written backward (native backend). */
  train(x: tf.Tensor4D, tape: BackwardTape): Traced {
    const gamma = this.gamma as tf.Tensor1D;
    const beta = this.beta as tf.Tensor1D;
    const parts = this.splits > 1 ? this.checkedSplit(x) : [x];
    const outs = parts.map((part) => fusedBatchNormForward(part, gamma, beta, this.eps));
    const saved = outs.map((o, i) => ({
      x: tape.save(parts[i]!),
      reserve: o.reserve.map((r) => tape.save(r)),
    }));
    const mean =
      outs.length > 1 ? tf.div(tf.addN(outs.map((o) => o.mean)), outs.length) : outs[0]!.mean;
    const unbiasedVariance =
      outs.length > 1
        ? tf.div(tf.addN(outs.map((o) => o.unbiasedVariance)), outs.length)
        : outs[0]!.unbiasedVariance;
    this.updateRunning(mean, unbiasedVariance);
    tf.dispose([mean, unbiasedVariance, ...outs.flatMap((o) => [o.mean, o.unbiasedVariance])]);
    const y =
      outs.length > 1
        ? tf.concat(
            outs.map((o) => o.y),
            0,
          )
        : outs[0]!.y;
    if (outs.length > 1) tf.dispose(outs.map((o) => o.y)); // the per-split outputs, concatenated
    return {
      y,
      back: (dy) => {
        const dys = outs.length > 1 ? (tf.split(dy, outs.length, 0) as tf.Tensor4D[]) : [dy];
        const dxs = saved.map((s, i) => {
          const r = fusedBatchNormBackward(
            dys[i]!,
            tape.get(s.x),
            gamma,
            s.reserve.map((h) => tape.get(h)),
            this.eps,
          );
          tape.release(s.x, ...s.reserve);
          tape.addGrad(this.gamma, r.dgamma);
          tape.addGrad(this.beta, r.dbeta);
          return r.dx;
        });
        if (dxs.length === 1) return dxs[0]!;
        tf.dispose(dys);
        const dx = tf.concat(dxs, 0);
        tf.dispose(dxs);
        return dx;
      },
    };
  }

  /** Running statistics follow the batch's with momentum (PyTorch's convention). */
  private updateRunning(mean: tf.Tensor, unbiasedVariance: tf.Tensor): void {
    const m = this.momentum;
    tf.tidy(() => {
      this.runningMean.assign(tf.add(tf.mul(this.runningMean, 1 - m), tf.mul(mean, m)));
      this.runningVar.assign(tf.add(tf.mul(this.runningVar, 1 - m), tf.mul(unbiasedVariance, m)));
    });
  }

  private checkedSplit(x: tf.Tensor4D): tf.Tensor4D[] {
    const n = x.shape[0];
    if (n % this.splits !== 0) {
      throw new ConfigError(
        'model.bnSplits',
        `a batch of ${n} does not divide into ${this.splits} BatchNorm splits`,
        { hint: 'choose optim.batchSize divisible by model.bnSplits' },
      );
    }
    return tf.split(x, this.splits, 0) as tf.Tensor4D[];
  }

  /**
   * SplitBatchNorm: the batch is cut into `splits` equal sub-batches (contiguous;
   * the key batch is shuffled before it gets here), each normalised with its own
   * statistics; the running statistics follow the mean of the sub-batch
   * statistics, as when each split updates its own copy and the copies are averaged.
   */
  private splitTraining(x: tf.Tensor4D): {
    y: tf.Tensor4D;
    mean: tf.Tensor1D;
    unbiasedVariance: tf.Tensor1D;
  } {
    const outs = this.checkedSplit(x).map((part) =>
      batchNormTraining(part, this.gamma as tf.Tensor1D, this.beta as tf.Tensor1D, this.eps),
    );
    const y = tf.concat(
      outs.map((o) => o.y),
      0,
    );
    const mean = tf.div(tf.addN(outs.map((o) => o.mean)), this.splits) as tf.Tensor1D;
    const unbiasedVariance = tf.div(
      tf.addN(outs.map((o) => o.unbiasedVariance)),
      this.splits,
    ) as tf.Tensor1D;
    tf.dispose(outs.flatMap((o) => [o.mean, o.unbiasedVariance]));
    return { y, mean, unbiasedVariance };
  }
}

export class Linear {
  readonly w: tf.Variable;
  readonly b: tf.Variable;
  constructor(
    store: ParamStore,
    /** Prefix of the variable names (`<name>/w`, `<name>/b`). */
    readonly name: string,
    fanIn: number,
    readonly fanOut: number,
  ) {
    ({ w: this.w, b: this.b } = store.linear(name, fanIn, fanOut));
  }

  describe(): ArchNode {
    return { kind: 'dense', name: this.name, units: this.fanOut };
  }
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.add(tf.matMul(x, this.w as tf.Tensor2D), this.b) as tf.Tensor2D;
  }
}
