import type { ImageSplit, StreamedSplit, TrainingDataset } from './contracts.js';
import { DatasetError } from './errors.js';

/** True when a split is read from disk batch by batch rather than held in memory. */
export function isStreamed(split: ImageSplit | StreamedSplit): split is StreamedSplit {
  return (split as StreamedSplit).kind === 'streamed';
}

/**
 * The labelled splits kNN and the linear probe use: `evalTrain` (else the
 * in-memory `train`) as the bank / fit set, and `test` as the evaluated set.
 * @throws DatasetError when the dataset has none (`dataset.unlabelled` says why and what to set).
 */
export function evaluationSplits(dataset: TrainingDataset): { bank: ImageSplit; test: ImageSplit } {
  const bank = dataset.evalTrain ?? (isStreamed(dataset.train) ? undefined : dataset.train);
  if (dataset.unlabelled !== undefined || !bank) {
    throw new DatasetError(
      dataset.source ?? dataset.name,
      'has no labelled images to evaluate on',
      {
        hint: dataset.unlabelled ?? 'give it labelled images (data.eval.train and data.eval.test)',
      },
    );
  }
  return { bank, test: dataset.test };
}
