import * as tf from '@tensorflow/tfjs';
import {
  ConfigError,
  ContractError,
  isStreamed,
  type Augmentation,
  type ImageSplit,
  type Rng,
  type TrainingDataset,
  type ViewGroup,
  type Views,
} from '@contrast/core';
import { normalize } from './augment.js';

/**
 * One training batch: the augmented crops of the same images in group order
 * (two independent views x1, x2: [N, H, W, C] by default; every crop of every
 * group with data.views) and their dataset indices.
 */
export interface ViewBatch extends Views {
  epoch: number;
  /** Step within the epoch (0-based). */
  step: number;
  /**
   * Where the random streams stand, for an exact resume after this batch: the
   * data-order stream before this epoch's permutation, and the augmentation
   * stream after this batch's draws.
   */
  position: { dataRng: number[]; augRng: number[] };
}

/** The name the batch had when it held exactly two views (it still begins with them). */
export type TwoViewBatch = ViewBatch;

/** uint8 NHWC pixels of `split` at `indices` -> float [N, H, W, C] in [0, 1]. */
export function gatherPixels(
  split: ImageSplit,
  indices: ArrayLike<number>,
  shape: { height: number; width: number; channels: number },
): tf.Tensor4D {
  const px = shape.height * shape.width * shape.channels;
  const out = new Float32Array(indices.length * px);
  for (let i = 0; i < indices.length; i++) {
    const src = indices[i]! * px;
    for (let j = 0; j < px; j++) out[i * px + j] = split.images[src + j]! / 255;
  }
  return tf.tensor4d(out, [indices.length, shape.height, shape.width, shape.channels]);
}

/** Normalised, un-augmented images start..end of a split (for evaluation). */
export function splitBatch(
  ds: TrainingDataset,
  split: ImageSplit,
  start: number,
  end: number,
): tf.Tensor4D {
  const idx = Array.from({ length: end - start }, (_, i) => start + i);
  return tf.tidy(() => normalize(gatherPixels(split, idx, ds), ds.mean, ds.std));
}

export function stepsPerEpoch(n: number, batchSize: number, dropLast: boolean): number {
  return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

/** One planned batch: which samples, and where the data-order stream stood before its epoch. */
export interface BatchPlan {
  epoch: number;
  step: number;
  /** Sample indices of the batch, in the epoch's order. */
  indices: Int32Array;
  /** The data-order stream before this epoch's permutation. */
  dataRng: number[];
}

/** What every batch stream takes. */
export interface BatchStreamOptions {
  dataset: TrainingDataset;
  augmentation: Augmentation;
  rng: Rng;
  batchSize: number;
  dropLast: boolean;
  /**
   * Data-parallel: this worker's slice of every global batch (equal slices, rank
   * order). Every worker draws the same order and augmentation draws; each
   * reads, decodes and augments only its rows.
   */
  worker?: { rank: number; worldSize: number };
  /** Resume: start at this epoch (its permutation is drawn from `rng` as it stands)... */
  startEpoch?: number;
  /** ...and at this step within it (earlier steps are skipped, not computed). */
  startStep?: number;
  epochs: number;
}

/**
 * The order of `n` samples over epochs, in batches: each epoch's permutation is
 * drawn from `rng` when the epoch is reached, so a run's data order is
 * reproducible from its seed and resumable from `dataRng`.
 */
export function* batchPlans(
  n: number,
  options: Omit<BatchStreamOptions, 'dataset' | 'augmentation'>,
): Generator<BatchPlan> {
  const { rng, batchSize, dropLast } = options;
  const steps = stepsPerEpoch(n, batchSize, dropLast);
  const first = options.startEpoch ?? 0;
  for (let epoch = first; epoch < options.epochs; epoch++) {
    const dataRng = rng.getState();
    const order = rng.permutation(n);
    for (let step = epoch === first ? (options.startStep ?? 0) : 0; step < steps; step++) {
      const indices = order.subarray(step * batchSize, Math.min(n, (step + 1) * batchSize));
      yield { epoch, step, indices, dataRng };
    }
  }
}

/** The crop groups an augmentation draws: its own, else two crops of its outSize. */
export function viewGroupsOf(augmentation: Augmentation): readonly ViewGroup[] {
  return (
    augmentation.groups ?? [{ name: 'global', start: 0, count: 2, size: augmentation.outSize }]
  );
}

/** Crops per image an augmentation draws, over all its groups. */
export function cropCountOf(augmentation: Augmentation): number {
  return viewGroupsOf(augmentation).reduce((n, g) => n + g.count, 0);
}

/**
 * A batch's crops from its images: uint8 NHWC pixels of `images` at `rows`, in
 * [0, 1], every crop drawn from the augmentation's stream in crop order. With
 * `part` (data-parallel) the rows are this worker's slice of the batch, and
 * every crop draws the whole batch's parameters and applies its rows' (so the
 * stream moves as on one process).
 */
export function viewBatch(
  plan: BatchPlan,
  images: ImageSplit,
  rows: ArrayLike<number>,
  options: { dataset: TrainingDataset; augmentation: Augmentation; part?: WorkerPart },
): ViewBatch {
  const { dataset, augmentation, part } = options;
  const own = part ? plan.indices.slice(part.start, part.start + part.size) : plan.indices;
  const groups = viewGroupsOf(augmentation);
  const count = cropCountOf(augmentation);
  const batch = tf.tidy(() => {
    const x = gatherPixels(images, rows, dataset);
    const within = part ? { total: plan.indices.length, start: part.start } : undefined;
    const crops = Array.from({ length: count }, (_, i) => augmentation.view(x, i, within));
    return { crops, indices: tf.tensor1d(own, 'int32') };
  });
  return {
    x1: batch.crops[0]!,
    x2: batch.crops[1]!,
    crops: batch.crops,
    groups,
    indices: batch.indices,
    indexArray: Int32Array.from(own),
    ...(part
      ? { part: { start: part.start, batchIndexArray: Int32Array.from(plan.indices) } }
      : {}),
    epoch: plan.epoch,
    step: plan.step,
    position: { dataRng: plan.dataRng, augRng: augmentation.rngState() },
  };
}

/** A worker's rows of a global batch: start .. start + size. */
export interface WorkerPart {
  start: number;
  size: number;
}

/**
 * The data-parallel rule for batches: every batch of an epoch divides among
 * the workers (the global batch `optim.batchSize`, and with `data.dropLast`
 * false the epoch's last, smaller batch), so each worker takes an equal slice.
 * Checked before training (the trainer's session) and again on each batch
 * (workerPart), with one error.
 * @param trainSize the training set's size; undefined checks only `batchSize`
 * @throws ConfigError (optim.batchSize) naming the batch that does not divide, and the fix.
 */
export function checkWorkerBatches(
  batchSize: number,
  worldSize: number,
  epoch: { trainSize: number; dropLast: boolean } | undefined = undefined,
): void {
  if (worldSize === 1) return;
  const last = epoch && !epoch.dropLast ? epoch.trainSize % batchSize : 0;
  const bad = batchSize % worldSize !== 0 ? batchSize : last % worldSize !== 0 ? last : 0;
  if (bad === 0) return;
  throw new ConfigError(
    'optim.batchSize',
    `a batch of ${bad} does not divide among ${worldSize} workers${bad === batchSize ? '' : ` (the epoch's last batch, with a global batch of ${batchSize})`}`,
    {
      hint: `optim.batchSize is the global batch: use a multiple of ${worldSize} (each worker takes batchSize / ${worldSize}); with data.dropLast: false the epoch's last, smaller batch must divide too (set data.dropLast: true, or a data.trainSubset whose remainder divides by ${worldSize})`,
    },
  );
}

/**
 * Worker `rank`'s equal slice of a batch of `batchSize` among `worldSize` workers.
 * @throws ConfigError (optim.batchSize) when the batch does not divide among them (checkWorkerBatches).
 */
export function workerPart(
  batchSize: number,
  worker: { rank: number; worldSize: number },
): WorkerPart {
  const { rank, worldSize } = worker;
  checkWorkerBatches(batchSize, worldSize);
  const size = batchSize / worldSize;
  return { start: rank * size, size };
}

/**
 * Epochs of batches (every crop of data.views; two views by default) of an in-memory dataset. The order of each epoch
 * is a permutation drawn from the seeded Rng, so a run's data order is
 * reproducible. The caller owns the tensors of each batch and disposes them
 * after the step.
 * @throws ContractError for a streamed dataset (use streamedTwoViewBatches).
 */
export function* twoViewBatches(options: BatchStreamOptions): Generator<ViewBatch> {
  const train = options.dataset.train;
  if (isStreamed(train)) {
    throw new ContractError(`'${options.dataset.name}' is streamed: its batches are asynchronous`, {
      hint: 'read it with streamedTwoViewBatches (TrainingSession.batchStream does)',
    });
  }
  for (const plan of batchPlans(train.n, options)) {
    if (!options.worker) {
      yield viewBatch(plan, train, plan.indices, options);
      continue;
    }
    const part = workerPart(plan.indices.length, options.worker);
    const rows = plan.indices.subarray(part.start, part.start + part.size);
    yield viewBatch(plan, train, rows, { ...options, part });
  }
}

/**
 * Runs a producer ahead of its consumer by `depth` items. With the native
 * backend's synchronous kernels the gain is bounded: the next batch's host-side
 * work (permutation, pixel gather, augmentation draws) is queued while the
 * previous step's results are read back. `buffered` says how many items are
 * held ahead (leak checks subtract their tensors).
 */
export class Prefetcher<T> implements AsyncIterable<T> {
  private readonly buffer: T[] = [];

  constructor(
    private readonly source: Iterable<T>,
    private readonly depth: number,
    /** Releases items produced ahead when the consumer stops early. */
    private readonly discard?: (item: T) => void,
  ) {}

  get buffered(): number {
    return this.buffer.length;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    const it = this.source[Symbol.iterator]();
    let done = false;
    const fill = () => {
      while (!done && this.buffer.length < Math.max(1, this.depth)) {
        const r = it.next();
        if (r.done) done = true;
        else this.buffer.push(r.value);
      }
    };
    try {
      fill();
      while (this.buffer.length > 0) {
        const item = this.buffer.shift()!;
        await new Promise<void>((r) => setImmediate(r));
        fill();
        yield item;
      }
    } finally {
      if (this.discard) for (const item of this.buffer.splice(0)) this.discard(item);
      it.return?.();
    }
  }
}

export function prefetch<T>(
  source: Iterable<T>,
  depth: number,
  discard?: (item: T) => void,
): Prefetcher<T> {
  return new Prefetcher(source, depth, discard);
}

/** Tensors each buffered batch of the default two views holds (x1, x2, indices). */
export const TENSORS_PER_BATCH = 3;

/** Tensors each buffered batch of `augmentation` holds: its crops and the indices. */
export function tensorsPerBatch(augmentation: Augmentation): number {
  return cropCountOf(augmentation) + 1;
}

/** Releases a batch's tensors (x1 and x2 are crops[0] and crops[1]). */
export function disposeBatch(b: ViewBatch): void {
  tf.dispose([...new Set([b.x1, b.x2, ...b.crops, b.indices])]);
}
