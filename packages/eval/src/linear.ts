import * as tf from '@tensorflow/tfjs';
import { UsageError, type Rng } from '@contrast/core';

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
  /** Base lr of `linearProbe` (a fixed lr); `linearEvaluation` selects one unless given. */
  lr: number;
  momentum: number;
  weightDecay: number;
  batchSize: number;
  /** Fractions of `epochs` after which the lr is multiplied by 0.1 (MoCo: 60 and 80 of 100). */
  milestones: number[];
}

/** MoCo's probe settings; its lr 30 suits unnormalised ImageNet ResNet-50 features. */
export const LINEAR_PROBE_DEFAULTS: LinearProbeOptions = {
  epochs: 100,
  lr: 30,
  momentum: 0.9,
  weightDecay: 0,
  batchSize: 256,
  milestones: [0.6, 0.8],
};

/**
 * The lr selection of `linearEvaluation` when no lr is given: every candidate
 * is trained on the training split minus a held-out fraction (same epochs and
 * schedule as the final probe), the best held-out top-1 among those whose
 * training loss ends below the chance value ln C wins (ties: the smaller lr),
 * and the probe is retrained with it on the whole training split. The
 * test split plays no part. Candidates span MoCo's 30 down to 0.1, the range
 * solo-learn's and lightly's probe recipes use.
 */
export const PROBE_LR_SWEEP = {
  lrs: [0.1, 0.3, 1, 3, 10, 30] as readonly number[],
  /** Fraction of the training split held out to score the candidates. */
  heldOut: 0.1,
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

/** Labelled fixed features: features [N, F], labels N class ids. */
export interface LabelledFeatures {
  features: tf.Tensor2D;
  labels: Int32Array;
}

/** L probes trained side by side: W [F, L*C] (head i = columns iC..iC+C-1), b [L*C]. */
export interface LinearHeads {
  w: tf.Variable;
  b: tf.Variable;
  /** Mean training loss per epoch, per head: [L][epochs]. */
  losses: number[][];
  numClasses: number;
}

/**
 * Trains one linear head per lr in `lrs` on the same shuffled mini-batches, by
 * SGD on softmax cross-entropy with PyTorch's momentum form (v = m v + g;
 * w -= lr v) and the gradient in closed form ((softmax - onehot) / B). The
 * heads share nothing but the batches and their init (MoCo's: W ~ N(0, 0.01),
 * b = 0), so head i is exactly what a probe with lr `lrs[i]` alone would be;
 * training them as one [F, L*C] matrix costs about one probe. The caller
 * disposes `w` and `b`.
 */
export function trainLinearHeads(
  train: LabelledFeatures,
  numClasses: number,
  rng: Rng,
  o: LinearProbeOptions,
  lrs: readonly number[],
): LinearHeads {
  const [n, f] = train.features.shape;
  const heads = lrs.length;
  const width = heads * numClasses;
  const variable = (t: tf.Tensor) => {
    const v = tf.variable(t);
    t.dispose();
    return v;
  };
  const init = tf.tensor2d(rng.normalArray(f * numClasses, 0.01), [f, numClasses]);
  const w = variable(tf.tile(init, [1, heads]));
  init.dispose();
  const b = variable(tf.zeros([width]));
  const vw = variable(tf.zeros([f, width]));
  const vb = variable(tf.zeros([width]));
  const labelsT = tf.tensor1d(train.labels, 'int32');
  const losses: number[][] = lrs.map(() => []);
  try {
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      const scale = probeLearningRate({ ...o, lr: 1 }, epoch);
      // lr per column: head i's lr on its C columns
      const lr = tf.tensor1d(lrs.flatMap((l) => Array<number>(numClasses).fill(l * scale)));
      const order = tf.tensor1d(rng.permutation(n), 'int32');
      let lossSum: tf.Tensor1D = tf.zeros([heads]);
      for (let s = 0; s < n; s += o.batchSize) {
        const e = Math.min(n, s + o.batchSize);
        const next = tf.tidy(() => {
          const idx = order.slice(s, e - s);
          const x = tf.gather(train.features, idx);
          const y = tf.oneHot(tf.gather(labelsT, idx), numClasses).expandDims(1); // [B, 1, C]
          const logits = tf.add(tf.matMul(x, w), b).reshape([e - s, heads, numClasses]);
          const logp = tf.logSoftmax(logits); // [B, L, C]
          const loss = tf.neg(tf.mean(tf.sum(tf.mul(y, logp), 2), 0)); // [L]
          const d = tf.div(tf.sub(tf.exp(logp), y), e - s).reshape([e - s, width]);
          let gw = tf.matMul(x, d, true, false);
          if (o.weightDecay > 0) gw = tf.add(gw, tf.mul(w, o.weightDecay));
          const gb = tf.sum(d, 0);
          vw.assign(tf.add(tf.mul(vw, o.momentum), gw));
          vb.assign(tf.add(tf.mul(vb, o.momentum), gb));
          w.assign(tf.sub(w, tf.mul(vw, lr)));
          b.assign(tf.sub(b, tf.mul(vb, lr)));
          return tf.add(lossSum, tf.mul(loss, e - s)) as tf.Tensor1D;
        });
        lossSum.dispose();
        lossSum = next;
      }
      const sums = lossSum.dataSync(); // one read per epoch
      lrs.forEach((_, i) => losses[i]!.push(sums[i]! / n));
      tf.dispose([lossSum, order, lr]);
    }
    return { w, b, losses, numClasses };
  } catch (err) {
    tf.dispose([w, b]);
    throw err;
  } finally {
    tf.dispose([vw, vb, labelsT]);
  }
}

/** Head `head`'s logits [N, C] on features x [N, F]. */
export function headLogits(p: LinearHeads, head: number, x: tf.Tensor2D): tf.Tensor2D {
  const c = p.numClasses;
  return tf.tidy(
    () =>
      tf.add(
        tf.matMul(x, tf.slice(p.w, [0, head * c], [-1, c])),
        tf.slice(p.b, [head * c], [c]),
      ) as tf.Tensor2D,
  );
}

/**
 * Trains W [F, C], b [C] by SGD on softmax cross-entropy over fixed features
 * at the fixed lr `options.lr` (MoCo's protocol: lr 30 by default, stepped
 * down at the milestones); see `trainLinearHeads` for the update. Returns test
 * top-1 / top-5 and the training top-1.
 */
export function linearProbe(
  train: LabelledFeatures,
  test: LabelledFeatures,
  numClasses: number,
  rng: Rng,
  options: Partial<LinearProbeOptions> = {},
): LinearProbeResult {
  const o = { ...LINEAR_PROBE_DEFAULTS, ...options };
  const t0 = performance.now();
  const probes = trainLinearHeads(train, numClasses, rng, o, [o.lr]);
  try {
    const testLogits = headLogits(probes, 0, test.features);
    const trainLogits = headLogits(probes, 0, train.features);
    const result = {
      top1: topKAccuracy(testLogits, test.labels, 1),
      top5: topKAccuracy(testLogits, test.labels, 5),
      trainTop1: topKAccuracy(trainLogits, train.labels, 1),
      losses: probes.losses[0]!,
      seconds: (performance.now() - t0) / 1000,
    };
    tf.dispose([testLogits, trainLogits]);
    return result;
  } finally {
    tf.dispose([probes.w, probes.b]);
  }
}

/** One lr candidate of the selection, scored on the held-out part of the training split. */
export interface LrCandidate {
  lr: number;
  heldOutTop1: number;
  /** Mean training loss of the last epoch on the fitted part (NaN or Infinity: diverged). */
  finalLoss: number;
}

/** How `selectProbeLr` chose: the candidates and the split of the training rows it used. */
export interface LrSelection {
  lr: number;
  candidates: LrCandidate[];
  /** Training-split rows (ascending) that scored the candidates; none was fitted on. */
  heldOut: Int32Array;
  /** Training-split rows (ascending) the candidates were fitted on. */
  fitted: Int32Array;
}

/**
 * Chooses the probe's lr on the training split alone (`PROBE_LR_SWEEP`): a
 * seeded random `heldOut` fraction of its rows is set aside, one head per
 * candidate lr is fitted on the rest with the given epochs and schedule, and
 * the best held-out top-1 among the heads that converged wins (final training
 * loss below the chance value ln C; ties: the smaller lr). When none converged,
 * the best held-out top-1 of all.
 * @throws UsageError when the split has fewer than 2 rows (nothing to hold out).
 */
export function selectProbeLr(
  train: LabelledFeatures,
  numClasses: number,
  rng: Rng,
  options: Partial<LinearProbeOptions> = {},
  sweep: { lrs: readonly number[]; heldOut: number } = PROBE_LR_SWEEP,
): LrSelection {
  const n = train.labels.length;
  if (n < 2) {
    throw new UsageError(`lr selection needs at least 2 training images, got ${n}`, {
      hint: 'give a fixed lr (--lr 1) or more training images (--train)',
    });
  }
  const o = { ...LINEAR_PROBE_DEFAULTS, ...options };
  const order = rng.permutation(n);
  const cut = Math.min(n - 1, Math.max(1, Math.round(sweep.heldOut * n)));
  const heldOut = order.slice(0, cut).sort();
  const fitted = order.slice(cut).sort();
  const part = (rows: Int32Array): LabelledFeatures => ({
    features: tf.tidy(() => tf.gather(train.features, tf.tensor1d(rows, 'int32'))),
    labels: Int32Array.from(rows, (r) => train.labels[r]!),
  });
  const fit = part(fitted);
  const held = part(heldOut);
  try {
    const probes = trainLinearHeads(fit, numClasses, rng, o, sweep.lrs);
    const candidates = sweep.lrs.map((lr, i) => {
      const logits = headLogits(probes, i, held.features);
      const heldOutTop1 = topKAccuracy(logits, held.labels, 1);
      logits.dispose();
      return { lr, heldOutTop1, finalLoss: probes.losses[i]!.at(-1) ?? Number.NaN };
    });
    tf.dispose([probes.w, probes.b]);
    // a head whose training loss ends at or above the chance value ln C (a constant
    // predictor's) has not converged: its top-1 is read off oversized logits
    const converged = (c: LrCandidate) => c.finalLoss < Math.log(numClasses);
    const score = (c: LrCandidate) => (converged(c) ? 1 : 0) + c.heldOutTop1;
    const best = candidates.reduce((a, c) =>
      score(c) > score(a) || (score(c) === score(a) && c.lr < a.lr) ? c : a,
    );
    return { lr: best.lr, candidates, heldOut, fitted };
  } finally {
    tf.dispose([fit.features, held.features]);
  }
}

/** A probe's result with the lr it used and, when selected, how. */
export interface LinearEvaluation extends LinearProbeResult {
  lr: number;
  /** Present when the lr was selected (no lr given). */
  selection?: LrSelection;
}

/**
 * The linear evaluation `contrast eval linear` runs: with `options.lr` a probe
 * at that fixed lr; without, the lr chosen by `selectProbeLr` on the training
 * split, then the probe retrained at that lr on the whole training split and
 * scored once on the test split.
 */
export function linearEvaluation(
  train: LabelledFeatures,
  test: LabelledFeatures,
  numClasses: number,
  rng: Rng,
  options: Partial<LinearProbeOptions> = {},
  sweep: { lrs: readonly number[]; heldOut: number } = PROBE_LR_SWEEP,
): LinearEvaluation {
  if (options.lr !== undefined) {
    return { ...linearProbe(train, test, numClasses, rng, options), lr: options.lr };
  }
  const t0 = performance.now();
  const selection = selectProbeLr(train, numClasses, rng, options, sweep);
  const r = linearProbe(train, test, numClasses, rng, { ...options, lr: selection.lr });
  return { ...r, seconds: (performance.now() - t0) / 1000, lr: selection.lr, selection };
}
