import * as tf from '@tensorflow/tfjs';
import { evaluationSplits, Rng, type ImageSplit } from '@contrast/core';
import { BatchAugmentation, gatherPixels, splitBatch } from '@contrast/data';
import {
  alignmentUniformity,
  embeddingHealth,
  embeddingStd,
  extractFeatures,
  inferenceBatchSize,
  type EmbeddingHealth,
  knnOnEncoder,
  knnOnPixels,
  type KnnResult,
} from '@contrast/eval';
import type { TrainingSession } from './session.js';

/**
 * The evaluations a run monitors, on a session's dataset and encoder: weighted
 * kNN (InstDisc / the MoCo CIFAR demo: k, t from eval.knn, cosine, the training
 * split as the bank) on pooled backbone features or raw pixels, and Wang &
 * Isola's alignment / uniformity of the embeddings.
 */
function toBatch(session: TrainingSession) {
  return (split: ImageSplit, s: number, e: number) => splitBatch(session.dataset, split, s, e);
}

/** kNN top-1 of the session's encoder (BN in eval mode) on the test split (or its first eval.knn.testSize). */
export function knnOfEncoder(session: TrainingSession): KnnResult {
  const { k, t, bankSize, testSize } = session.config.eval.knn;
  return knnOnEncoder(session.dataset, toBatch(session), session.encoder, {
    k,
    t,
    bankSize,
    testSize,
  });
}

/**
 * The kNN monitor's protocol as measured (InstDisc's weighted kNN): the dataset,
 * k, t, the features, and how much of each split was used: the bank is the first
 * `bankSize` of `bankOf` training images (of the first `trainSubset` when
 * data.trainSubset is set), the test set the first `testSize` of `testOf`.
 */
export interface KnnMeasurement {
  dataset: string;
  k: number;
  t: number;
  features: 'pooled backbone';
  bankSize: number;
  bankOf: number;
  testSize: number;
  testOf: number;
  /** data.trainSubset (0 = the whole training split). */
  trainSubset: number;
}

/** How a kNN result of this session was measured. */
export function knnMeasurementOf(session: TrainingSession, r: KnnResult): KnnMeasurement {
  const { config, dataset } = session;
  const { bank, test } = evaluationSplits(dataset);
  return {
    dataset: dataset.name,
    k: config.eval.knn.k,
    t: config.eval.knn.t,
    features: 'pooled backbone',
    bankSize: r.bankSize,
    bankOf: bank.n,
    testSize: r.testSize,
    testOf: test.n,
    trainSubset: config.data.trainSubset,
  };
}

/** kNN top-1 on raw (normalised) pixels: the baseline a trained encoder should beat. */
export function knnOfPixels(session: TrainingSession): KnnResult {
  const { k, t, bankSize, testSize } = session.config.eval.knn;
  return knnOnPixels(session.dataset, toBatch(session), { k, t, bankSize, testSize });
}

/**
 * Alignment / uniformity of the embeddings (eval-mode BN) on the first
 * eval.alignUniform test images, two views each from a fixed-seed augmentation
 * (independent of the training streams), and the per-dimension std of the
 * first views' embeddings (collapse shows as 0; healthy is about 1/sqrt(D)).
 * Undefined with fewer than 2 images.
 */
export function alignUniformOf(
  session: TrainingSession,
): { alignment: number; uniformity: number; embeddingStd: number } | undefined {
  const { config, dataset, encoder } = session;
  const n = Math.min(config.eval.alignUniform, dataset.test.n);
  if (n < 2) return undefined;
  const aug = new BatchAugmentation(config.data.augmentation, dataset, new Rng(config.seed + 7919));
  const views = { a: [] as tf.Tensor2D[], b: [] as tf.Tensor2D[] };
  const batch = inferenceBatchSize(dataset.height, dataset.width, 250);
  for (let s = 0; s < n; s += batch) {
    const idx = Array.from({ length: Math.min(batch, n - s) }, (_, i) => s + i);
    tf.tidy(() => {
      const x = gatherPixels(dataset.test, idx, dataset);
      views.a.push(tf.keep(encoder.embed(aug.apply(x), false)));
      views.b.push(tf.keep(encoder.embed(aug.apply(x), false)));
    });
  }
  const a = tf.concat(views.a, 0) as tf.Tensor2D;
  const b = tf.concat(views.b, 0) as tf.Tensor2D;
  const r = { ...alignmentUniformity({ a, b }), embeddingStd: embeddingStd(a) };
  tf.dispose([a, b, ...views.a, ...views.b]);
  return r;
}

/**
 * Health statistics of the embeddings (eval-mode BN, no augmentation) of the
 * first `n` test images: per-dimension std, effective rank, uniformity.
 */
export function embeddingHealthOf(session: TrainingSession, n: number): EmbeddingHealth {
  const { dataset, encoder } = session;
  const batches = toBatch(session);
  const z = extractFeatures(
    dataset.test,
    n,
    (s, e) => batches(dataset.test, s, e),
    (x) => encoder.embed(x, false), // already L2-normalised
    inferenceBatchSize(dataset.height, dataset.width, 250),
    false,
  );
  const health = embeddingHealth(z);
  z.dispose();
  return health;
}
