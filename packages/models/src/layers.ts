import { ConfigError } from '@contrast/core';
import * as tf from '@tensorflow/tfjs';
import { batchNormTraining } from './native-bn.js';
import type { ParamStore } from './params.js';

/**
 * Convolution with PyTorch's symmetric padding: TF's 'same' pads 0 before and
 * 1 after on stride-2 convs; explicit padding + 'valid' matches torch exactly.
 */
export class Conv {
  readonly w: tf.Variable;
  constructor(
    store: ParamStore,
    name: string,
    readonly k: number,
    cin: number,
    cout: number,
    readonly stride: number,
    readonly pad: number,
  ) {
    this.w = store.conv(`${name}/w`, k, cin, cout);
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    if (this.stride === 1 && this.pad * 2 === this.k - 1) {
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
    name: string,
    channels: number,
    readonly momentum = 0.1,
    readonly eps = 1e-5,
  ) {
    this.splits = store.bnSplits;
    this.gamma = store.param(`${name}/gamma`, [channels], 1);
    this.beta = store.param(`${name}/beta`, [channels], 0);
    this.runningMean = store.buffer(`${name}/running_mean`, [channels], 0);
    this.runningVar = store.buffer(`${name}/running_var`, [channels], 1);
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
    const m = this.momentum;
    tf.tidy(() => {
      this.runningMean.assign(tf.add(tf.mul(this.runningMean, 1 - m), tf.mul(mean, m)));
      this.runningVar.assign(tf.add(tf.mul(this.runningVar, 1 - m), tf.mul(unbiasedVariance, m)));
    });
    tf.dispose([mean, unbiasedVariance]);
    return y;
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
    const n = x.shape[0];
    if (n % this.splits !== 0) {
      throw new ConfigError(
        'model.bnSplits',
        `a batch of ${n} does not divide into ${this.splits} BatchNorm splits`,
        { hint: 'choose optim.batchSize divisible by model.bnSplits' },
      );
    }
    const outs = (tf.split(x, this.splits, 0) as tf.Tensor4D[]).map((part) =>
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
  constructor(store: ParamStore, name: string, fanIn: number, fanOut: number) {
    ({ w: this.w, b: this.b } = store.linear(name, fanIn, fanOut));
  }
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.add(tf.matMul(x, this.w as tf.Tensor2D), this.b) as tf.Tensor2D;
  }
}
