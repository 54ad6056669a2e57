import * as tf from '@tensorflow/tfjs';
import type { Rng } from '@contrast/core';

/**
 * The linear classification protocol of MoCo / InstDisc: a linear classifier on
 * frozen pooled backbone features (BN in eval mode), trained with SGD
 * (lr 30, momentum 0.9, weight decay 0 in MoCo), the lr divided by 10 at fixed
 * fractions of training. Features are computed once, without augmentation
 * (the usual fast variant on CPU); the classifier is trained on them in
 * shuffled mini-batches.
 */
export interface LinearProbeOptions {
  epochs: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  batchSize: number;
  /** Fractions of `epochs` after which the lr is multiplied by 0.1 (MoCo: 60 and 80 of 100). */
  milestones: number[];
}

export const LINEAR_PROBE_DEFAULTS: LinearProbeOptions = {
  epochs: 100,
  lr: 30,
  momentum: 0.9,
  weightDecay: 0,
  batchSize: 256,
  milestones: [0.6, 0.8],
};

export interface LinearProbeResult {
  top1: number;
  top5: number;
  trainTop1: number;
  /** Mean training loss per epoch. */
  losses: number[];
  seconds: number;
}

/** lr of epoch `e` (0-based) under the step schedule. */
export function probeLearningRate(o: LinearProbeOptions, epoch: number): number {
  const passed = o.milestones.filter((f) => epoch >= Math.round(f * o.epochs)).length;
  return o.lr * 0.1 ** passed;
}

/** Fraction of rows whose label is among the k largest logits (ties count against). */
export function topKAccuracy(logits: tf.Tensor2D, labels: Int32Array, k: number): number {
  const kk = Math.min(k, logits.shape[1]);
  const { values, indices } = tf.topk(logits, kk);
  const idx = indices.dataSync();
  tf.dispose([values, indices]);
  let hit = 0;
  for (let i = 0; i < labels.length; i++) {
    for (let j = 0; j < kk; j++) {
      if (idx[i * kk + j] === labels[i]) {
        hit++;
        break;
      }
    }
  }
  return hit / labels.length;
}

/**
 * Trains W [F, C], b [C] by SGD on softmax cross-entropy over fixed features,
 * with PyTorch's momentum form (v = m v + g; w -= lr v) and the gradient in
 * closed form ((softmax - onehot) / B). Init as MoCo: W ~ N(0, 0.01), b = 0.
 */
export function linearProbe(
  train: { features: tf.Tensor2D; labels: Int32Array },
  test: { features: tf.Tensor2D; labels: Int32Array },
  numClasses: number,
  rng: Rng,
  options: Partial<LinearProbeOptions> = {},
): LinearProbeResult {
  const o = { ...LINEAR_PROBE_DEFAULTS, ...options };
  const t0 = performance.now();
  const [n, f] = train.features.shape;
  const variable = (t: tf.Tensor) => {
    const v = tf.variable(t);
    t.dispose();
    return v;
  };
  const w = variable(tf.tensor2d(rng.normalArray(f * numClasses, 0.01), [f, numClasses]));
  const b = variable(tf.zeros([numClasses]));
  const vw = variable(tf.zeros([f, numClasses]));
  const vb = variable(tf.zeros([numClasses]));
  const labelsT = tf.tensor1d(train.labels, 'int32');
  const losses: number[] = [];
  try {
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      const lr = probeLearningRate(o, epoch);
      const order = tf.tensor1d(rng.permutation(n), 'int32');
      let lossSum = tf.scalar(0);
      for (let s = 0; s < n; s += o.batchSize) {
        const e = Math.min(n, s + o.batchSize);
        const next = tf.tidy(() => {
          const idx = order.slice(s, e - s);
          const x = tf.gather(train.features, idx);
          const y = tf.oneHot(tf.gather(labelsT, idx), numClasses);
          const logits = tf.add(tf.matMul(x, w), b);
          const logp = tf.logSoftmax(logits);
          const loss = tf.neg(tf.mean(tf.sum(tf.mul(y, logp), 1)));
          const d = tf.div(tf.sub(tf.exp(logp), y), e - s);
          let gw = tf.matMul(x, d, true, false);
          if (o.weightDecay > 0) gw = tf.add(gw, tf.mul(w, o.weightDecay));
          const gb = tf.sum(d, 0);
          vw.assign(tf.add(tf.mul(vw, o.momentum), gw));
          vb.assign(tf.add(tf.mul(vb, o.momentum), gb));
          w.assign(tf.sub(w, tf.mul(vw, lr)));
          b.assign(tf.sub(b, tf.mul(vb, lr)));
          return tf.add(lossSum, tf.mul(loss, e - s)) as tf.Scalar;
        });
        lossSum.dispose();
        lossSum = next;
      }
      losses.push(lossSum.dataSync()[0]! / n); // one read per epoch
      tf.dispose([lossSum, order]);
    }
    const scores = (x: tf.Tensor2D) => tf.tidy(() => tf.add(tf.matMul(x, w), b) as tf.Tensor2D);
    const testLogits = scores(test.features);
    const trainLogits = scores(train.features);
    const result = {
      top1: topKAccuracy(testLogits, test.labels, 1),
      top5: topKAccuracy(testLogits, test.labels, 5),
      trainTop1: topKAccuracy(trainLogits, train.labels, 1),
      losses,
      seconds: (performance.now() - t0) / 1000,
    };
    tf.dispose([testLogits, trainLogits]);
    return result;
  } finally {
    tf.dispose([w, b, vw, vb, labelsT]);
  }
}
