import type { ExperimentConfig } from '@contrast/core';

/** The facts of a run's kNN evaluation, in words a figure or a table can print. */
export interface KnnProtocol {
  /** Neighbours k and vote temperature t (Wu et al. 2018; InstDisc and MoCo use k = 200). */
  k: number;
  t: number;
  /** The registry name of the dataset, e.g. 'fashion-mnist'. */
  dataset: string;
  /** What is compared: e.g. 'convnet backbone features (pooled, before the head)'. */
  features: string;
  /** The bank, e.g. 'first 20,000 training images (a subset)' or 'full training split'. */
  bank: string;
  /** The evaluated images, e.g. 'first 2,000 test images (a subset)' or 'full test split'. */
  test: string;
  /** True when the bank is part of the training split only. */
  bankIsSubset: boolean;
  /** True when only part of the test split is evaluated. */
  testIsSubset: boolean;
}

const count = (n: number) => n.toLocaleString('en-US');

/**
 * The kNN protocol a run's resolved config implies, as `knnOnEncoder` applies it:
 * the encoder's pooled backbone features (BN in eval mode, L2-normalised), the
 * first `eval.knn.bankSize` images of the training split as the bank (the split is
 * already cut to `data.trainSubset` when that is set) and the first
 * `eval.knn.testSize` test images evaluated (0 = all).
 *
 * Sizes come from the config alone: a full split is named, not counted. A dataset
 * with a separate labelled split for evaluation (`evalTrain`, e.g. stl10-unlabeled)
 * takes its bank from that split, which `data.trainSubset` does not cut; the
 * config cannot tell, so such a bank is described as if it were cut.
 */
export function knnProtocol(
  config: Pick<ExperimentConfig, 'data' | 'model'> & {
    eval: Pick<ExperimentConfig['eval'], 'knn'>;
  },
): KnnProtocol {
  const { k, t, bankSize, testSize } = config.eval.knn;
  const subset = config.data.trainSubset;
  const bank =
    bankSize > 0 && subset > 0 ? Math.min(bankSize, subset) : bankSize > 0 ? bankSize : subset;
  return {
    k,
    t,
    dataset: config.data.dataset,
    features: `${config.model.encoder} backbone features (pooled, before the head)`,
    bank: bank > 0 ? `first ${count(bank)} training images (a subset)` : 'full training split',
    test: testSize > 0 ? `first ${count(testSize)} test images (a subset)` : 'full test split',
    bankIsSubset: bank > 0,
    testIsSubset: testSize > 0,
  };
}
