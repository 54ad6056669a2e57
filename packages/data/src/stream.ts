import { ContractError, DatasetError, isStreamed, type StreamedSplit } from '@contrast/core';
import {
  batchPlans,
  viewBatch,
  type BatchPlan,
  type BatchStreamOptions,
  type ViewBatch,
  type WorkerPart,
  workerPart,
} from './batches.js';
import { firstLine, unreadable } from './image-decode.js';

/** Batches as the trainer consumes them; `buffered` = batches held ahead as tensors. */
export interface BatchStream extends AsyncIterable<ViewBatch> {
  readonly buffered: number;
}

/** A batch's decoded pixels (uint8 NHWC) and its sample indices after replacements, or why it failed. */
type Decoded = { images: Uint8Array; indices: Int32Array } | { error: unknown };

/**
 * Sample `sample`'s pixels; an unreadable file is recorded in `split.skipped`
 * (or refused when strict) and replaced by the next sample in index order
 * that reads, so the batch keeps its size and the choice is deterministic.
 */
async function readOrReplace(
  split: StreamedSplit,
  sample: number,
  onSkip?: (file: string, reason: string) => void,
): Promise<{ index: number; pixels: Uint8Array }> {
  for (let k = 0; k < split.n; k++) {
    const index = (sample + k) % split.n;
    const file = split.file(index);
    if (split.skipped.has(file)) continue;
    try {
      return { index, pixels: await split.read(index) };
    } catch (e) {
      if (split.strict) throw unreadable(file, e);
      if (split.skipped.has(file)) continue; // a batch decoding ahead met it first
      split.skipped.add(file);
      onSkip?.(file, firstLine(e));
    }
  }
  throw new DatasetError(split.file(sample), 'no image of the dataset is readable', {
    hint: 'check the files and the folder permissions',
  });
}

/** Starts decoding a batch's images (all at once, on the thread pool); never rejects. */
async function readBatch(
  split: StreamedSplit,
  plan: BatchPlan,
  pixelsPerImage: number,
  onSkip?: (file: string, reason: string) => void,
): Promise<Decoded> {
  const images = new Uint8Array(plan.indices.length * pixelsPerImage);
  const indices = Int32Array.from(plan.indices);
  try {
    await Promise.all(
      Array.from(plan.indices, async (sample, k) => {
        const r = await readOrReplace(split, sample, onSkip);
        if (r.pixels.length !== pixelsPerImage) {
          throw new ContractError(
            `sample ${r.index} decoded to ${r.pixels.length} bytes, not ${pixelsPerImage}`,
          );
        }
        images.set(r.pixels, k * pixelsPerImage);
        indices[k] = r.index;
      }),
    );
    return { images, indices };
  } catch (error) {
    return { error };
  }
}

/**
 * Epochs of batches (every crop of data.views) of a streamed dataset, with the same order,
 * augmentation draws and resume positions as twoViewBatches over the same
 * images held in memory. A bounded decode queue runs ahead of the consumer:
 * the images of the next `depth` batches are decoded on the thread pool
 * (libvips) while the current step runs, and nothing else is kept, so memory
 * does not grow with the folder. The queue is a function of the data order
 * alone, so a resumed run rebuilds it from its position. Tensors are made
 * when a batch is taken (`buffered` is 0); the caller disposes them.
 * Unreadable files are replaced by the next readable sample (see
 * readOrReplace) and reported to `onSkip` once each.
 * @throws DatasetError when data.strict meets an unreadable file.
 */
export async function* streamedTwoViewBatches(
  options: BatchStreamOptions & {
    /** Batches decoded ahead of the one being consumed. */
    depth: number;
    onSkip?: (file: string, reason: string) => void;
  },
): AsyncGenerator<ViewBatch> {
  const split = options.dataset.train;
  if (!isStreamed(split)) {
    throw new ContractError(`'${options.dataset.name}' is held in memory`, {
      hint: 'read it with twoViewBatches (TrainingSession.batchStream does)',
    });
  }
  const { height, width, channels } = options.dataset;
  const px = height * width * channels;
  const plans = batchPlans(split.n, options);
  const queue: { plan: BatchPlan; part?: WorkerPart; decoded: Promise<Decoded> }[] = [];
  const fill = () => {
    while (queue.length <= Math.max(0, options.depth)) {
      const next = plans.next();
      if (next.done) return;
      const plan = next.value;
      // data-parallel: each worker decodes only its own rows of the batch
      const part = options.worker ? workerPart(plan.indices.length, options.worker) : undefined;
      const own = part
        ? { ...plan, indices: plan.indices.subarray(part.start, part.start + part.size) }
        : plan;
      queue.push({
        plan,
        ...(part ? { part } : {}),
        decoded: readBatch(split, own, px, options.onSkip),
      });
    }
  };
  fill();
  while (queue.length > 0) {
    const { plan, part, decoded } = queue.shift()!;
    fill(); // the next batches decode while this one is waited for and trained on
    const d = await decoded;
    if ('error' in d) throw d.error;
    const rows = Array.from({ length: d.indices.length }, (_, i) => i);
    const images = { images: d.images, labels: new Uint8Array(0), n: d.indices.length };
    if (!part) {
      yield viewBatch({ ...plan, indices: d.indices }, images, rows, options);
      continue;
    }
    // the batch's indices with this worker's rows as read (an unreadable file replaced)
    const indices = Int32Array.from(plan.indices);
    indices.set(d.indices, part.start);
    yield viewBatch({ ...plan, indices }, images, rows, { ...options, part });
  }
}

/** A streamed batch source as a BatchStream (no tensors are held ahead). */
export function streamBatches(options: Parameters<typeof streamedTwoViewBatches>[0]): BatchStream {
  return {
    buffered: 0,
    [Symbol.asyncIterator]: () => streamedTwoViewBatches(options),
  };
}
