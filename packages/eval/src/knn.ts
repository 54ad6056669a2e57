import * as tf from '@tensorflow/tfjs';
import {
  evaluationSplits,
  l2Normalize,
  type Encoder,
  type ImageSplit,
  type TrainingDataset,
} from '@contrast/core';

export interface KnnOptions {
  /** Neighbours (200 in InstDisc and the MoCo demo). */
  k: number;
  /** Temperature of the vote weight exp(sim / t) (0.1). */
  t: number;
  /** Use the first n training images as the bank (0 = all). */
  bankSize?: number;
  /** Evaluate the first n test images (0 = all). */
  testSize?: number;
  /** Bank images per feature-extraction batch (default inferenceBatchSize of the images). */
  batchSize?: number;
}

/**
 * Weighted kNN prediction (Wu et al. 2018): cosine similarity to the bank, the k
 * most similar vote for their label with weight exp(sim / t).
 *   bank [M, F] and queries [B, F] L2-normalised; bankLabels [M] int32 -> [B] int32
 */
export function knnPredict(
  bank: tf.Tensor2D,
  bankLabels: tf.Tensor1D,
  queries: tf.Tensor2D,
  k: number,
  t: number,
  numClasses: number,
): tf.Tensor1D {
  return tf.tidy(() => {
    const sim = tf.matMul(queries, bank, false, true); // [B, M]
    const { values, indices } = tf.topk(sim, Math.min(k, bank.shape[0])); // [B, k]
    const labels = tf.gather(bankLabels, indices); // [B, k]
    const weights = tf.exp(tf.div(values, t)); // [B, k]
    const votes = tf.sum(tf.mul(tf.oneHot(labels, numClasses), tf.expandDims(weights, 2)), 1); // [B, C]
    return tf.cast(tf.argMax(votes, 1), 'int32') as tf.Tensor1D;
  });
}

/**
 * Images per inference batch (feature extraction, kNN queries): `base` for
 * 28x28 images (Fashion-MNIST), proportionally fewer for larger ones so that a
 * batch's activations keep about the same size (e.g. 500 -> 382 at 32x32, 95 at
 * 64x64, 42 at 96x96); at least 16. Evaluation-mode features do not depend on it.
 */
export function inferenceBatchSize(height: number, width: number, base = 500): number {
  return Math.max(16, Math.min(base, Math.floor((base * 28 * 28) / (height * width))));
}

/** Features of the first `count` images of a split, computed in batches (L2-normalised unless told not to). */
export function extractFeatures(
  split: ImageSplit,
  count: number,
  toBatch: (start: number, end: number) => tf.Tensor4D,
  extract: (x: tf.Tensor4D) => tf.Tensor2D,
  batchSize: number,
  normalize = true,
): tf.Tensor2D {
  const parts: tf.Tensor2D[] = [];
  for (let s = 0; s < Math.min(count, split.n); s += batchSize) {
    const e = Math.min(s + batchSize, count, split.n);
    parts.push(
      tf.tidy(() => {
        const f = extract(toBatch(s, e));
        return normalize ? l2Normalize(f) : f;
      }),
    );
  }
  const all = tf.concat(parts, 0) as tf.Tensor2D;
  tf.dispose(parts);
  return all;
}

export interface KnnResult {
  accuracy: number;
  bankSize: number;
  testSize: number;
  seconds: number;
}

/**
 * kNN accuracy of a feature extractor: the labelled bank (evalTrain, else the
 * train split) as the bank, the test split evaluated.
 * @throws DatasetError when the dataset has no labelled images (`dataset.unlabelled`).
 */
export function knnAccuracy(
  dataset: TrainingDataset,
  toBatch: (split: ImageSplit, start: number, end: number) => tf.Tensor4D,
  extract: (x: tf.Tensor4D) => tf.Tensor2D,
  options: KnnOptions,
): KnnResult {
  const t0 = performance.now();
  const bs = options.batchSize ?? inferenceBatchSize(dataset.height, dataset.width);
  const queries = inferenceBatchSize(dataset.height, dataset.width, 250);
  const { bank: bankSplit, test } = evaluationSplits(dataset);
  const m = options.bankSize ? Math.min(options.bankSize, bankSplit.n) : bankSplit.n;
  const n = options.testSize ? Math.min(options.testSize, test.n) : test.n;
  const bank = extractFeatures(bankSplit, m, (s, e) => toBatch(bankSplit, s, e), extract, bs);
  const bankLabels = tf.tensor1d(Int32Array.from(bankSplit.labels.subarray(0, m)), 'int32');
  let correct = 0;
  for (let s = 0; s < n; s += queries) {
    const e = Math.min(s + queries, n);
    const pred = tf.tidy(() => {
      const q = l2Normalize(extract(toBatch(test, s, e)));
      return knnPredict(bank, bankLabels, q, options.k, options.t, dataset.numClasses);
    });
    const p = pred.dataSync();
    pred.dispose();
    for (let i = 0; i < p.length; i++) if (p[i] === test.labels[s + i]) correct++;
  }
  tf.dispose([bank, bankLabels]);
  return {
    accuracy: correct / n,
    bankSize: m,
    testSize: n,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** kNN on an encoder's pooled backbone features, BN in eval mode. */
export function knnOnEncoder(
  dataset: TrainingDataset,
  toBatch: (split: ImageSplit, start: number, end: number) => tf.Tensor4D,
  encoder: Encoder,
  options: KnnOptions,
): KnnResult {
  return knnAccuracy(dataset, toBatch, (x) => encoder.features(x, false), options);
}

/** kNN on raw (normalised) pixels: the reference line any representation should beat. */
export function knnOnPixels(
  dataset: TrainingDataset,
  toBatch: (split: ImageSplit, start: number, end: number) => tf.Tensor4D,
  options: KnnOptions,
): KnnResult {
  return knnAccuracy(
    dataset,
    toBatch,
    (x) => tf.reshape(x, [x.shape[0], -1]) as tf.Tensor2D,
    options,
  );
}

/**
 * Alignment and uniformity (Wang & Isola 2020) of L2-normalised embeddings on
 * held-out images: alignment = E ||f(x) - f(x+)||^2 over two augmented views of
 * the same image; uniformity = log E exp(-2 ||f(x) - f(y)||^2) over pairs of
 * different images. Lower is better for both.
 */
export function alignmentUniformity(views: { a: tf.Tensor2D; b: tf.Tensor2D }): {
  alignment: number;
  uniformity: number;
} {
  return tf.tidy(() => {
    const { a, b } = views;
    const n = a.shape[0];
    const alignment = tf.mean(tf.sum(tf.square(tf.sub(a, b)), 1));
    // ||x - y||^2 = 2 - 2 x.y for unit vectors; off-diagonal pairs only
    const sq = tf.sub(2, tf.mul(2, tf.matMul(a, a, false, true)));
    const offDiag = tf.sub(1, tf.eye(n));
    const e = tf.mul(tf.exp(tf.mul(sq, -2)), offDiag);
    const uniformity = tf.log(tf.div(tf.sum(e), n * (n - 1)));
    return {
      alignment: alignment.dataSync()[0]!,
      uniformity: uniformity.dataSync()[0]!,
    };
  });
}

/**
 * The mean over dimensions of the per-dimension standard deviation of
 * L2-normalised embeddings z [N, D] (SimSiam, Chen & He 2021, Fig. 2): about
 * 1/sqrt(D) when the embeddings spread over the sphere, 0 when they collapse to
 * a point. Population std (divides by N).
 */
export function embeddingStd(z: tf.Tensor2D): number {
  return tf.tidy(() => {
    const { variance } = tf.moments(z, 0); // [D]
    return tf.mean(tf.sqrt(variance)).dataSync()[0]!;
  });
}
