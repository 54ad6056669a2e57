import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AugmentationSchema,
  DatasetError,
  parseExperiment,
  resolveViews,
  Rng,
  type TrainingDataset,
} from '@contrast/core';
import { BatchAugmentation, CropGroupsAugmentation } from './augment.js';
import { checkWorkerBatches, disposeBatch, twoViewBatches, type TwoViewBatch } from './batches.js';
import { decodeImage, decodeSplit } from './image-decode.js';
import { openImageFolder, type ImageFolderDataset } from './image-folder.js';
import { streamedTwoViewBatches } from './stream.js';
import { syntheticImage, writeSyntheticFolder } from './synthetic-images.js';

const SIZE = 16;
const augConfig = AugmentationSchema.parse({});

/** Everything a batch says, read to the host (tensors disposed). */
function snapshot(b: TwoViewBatch) {
  const s = {
    x1: Array.from(b.x1.dataSync()),
    x2: Array.from(b.x2.dataSync()),
    crops: b.crops.map((c) => Array.from(c.dataSync())),
    groups: b.groups,
    indices: Array.from(b.indexArray),
    tensorIndices: Array.from(b.indices.dataSync()),
    epoch: b.epoch,
    step: b.step,
    position: b.position,
  };
  disposeBatch(b);
  return s;
}

async function collect(batches: AsyncIterable<TwoViewBatch> | Iterable<TwoViewBatch>) {
  const out: ReturnType<typeof snapshot>[] = [];
  for await (const b of batches) out.push(snapshot(b));
  return out;
}

const streamOf = (ds: TrainingDataset, seeds: { data: number; aug: number }, extra = {}) => ({
  dataset: ds,
  augmentation: new BatchAugmentation(augConfig, ds, new Rng(seeds.aug)),
  rng: new Rng(seeds.data),
  batchSize: 12,
  dropLast: true,
  epochs: 2,
  depth: 2,
  ...extra,
});

/** 2 global crops of the image side and 4 local crops of 6 px, scale [0.05, 0.4]. */
const multiCrop = (ds: TrainingDataset, seed: number) => {
  const { data } = parseExperiment({
    name: 'multi-crop',
    strategy: { name: 'x' },
    data: {
      views: [
        { name: 'global', count: 2, crop: { scale: [0.4, 1] }, perCrop: [{}, { solarize: 0.5 }] },
        { name: 'local', count: 4, crop: { size: 6, scale: [0.05, 0.4] } },
      ],
    },
  });
  return new CropGroupsAugmentation(resolveViews(data), ds, new Rng(seed));
};

describe('streamed two-view batches', () => {
  let root: string;
  let ds: ImageFolderDataset;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-stream-'));
    await writeSyntheticFolder(join(root, 'pics'), { count: 56, size: 24, perFolder: 20 });
    ds = await openImageFolder({ root: join(root, 'pics'), size: SIZE, holdout: 8 });
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('equal the in-memory batches of the same decoded images, seed for seed; another seed differs', async () => {
    expect([ds.train.n, ds.test.n, ds.channels]).toEqual([48, 8, 3]);
    const files = Array.from({ length: ds.train.n }, (_, i) => ds.train.file(i));
    const { split } = await decodeSplit(files, ds.train.labels, SIZE, true);
    const inMemory: TrainingDataset = { ...ds, train: split };
    const before = tf.memory().numTensors;
    const streamed = await collect(streamedTwoViewBatches(streamOf(ds, { data: 2, aug: 1 })));
    const held = await collect(twoViewBatches(streamOf(inMemory, { data: 2, aug: 1 })));
    expect(tf.memory().numTensors).toBe(before); // nothing left behind
    expect(streamed).toHaveLength(8); // 2 epochs of 48 / 12
    expect(streamed).toEqual(held);
    expect(streamed[0]!.indices).toEqual(streamed[0]!.tensorIndices);
    expect(new Set(streamed.slice(0, 4).flatMap((b) => b.indices)).size).toBe(48); // an epoch sees each image once
    const other = await collect(streamedTwoViewBatches(streamOf(ds, { data: 3, aug: 1 })));
    expect(other[0]!.indices).not.toEqual(streamed[0]!.indices);
  });

  it('resume from a batch position: the same batches as a stream that never stopped', async () => {
    const all = await collect(streamedTwoViewBatches(streamOf(ds, { data: 5, aug: 6 })));
    for (const after of [1, 3, 5]) {
      const last = all[after]!;
      const opts = streamOf(
        ds,
        { data: 0, aug: 0 },
        {
          startEpoch: last.epoch,
          startStep: last.step + 1,
        },
      );
      opts.rng.setState(last.position.dataRng);
      opts.augmentation.setRngState(last.position.augRng);
      expect(await collect(streamedTwoViewBatches(opts))).toEqual(all.slice(after + 1));
    }
  });

  it("data-parallel: each worker's batches are its rows of one process's batches (in memory and streamed)", async () => {
    const files = Array.from({ length: ds.train.n }, (_, i) => ds.train.file(i));
    const { split } = await decodeSplit(files, ds.train.labels, SIZE, true);
    const inMemory: TrainingDataset = { ...ds, train: split };
    const whole = await collect(twoViewBatches(streamOf(inMemory, { data: 4, aug: 7 })));
    const px = SIZE * SIZE * 3;
    for (const worldSize of [2, 3]) {
      for (let rank = 0; rank < worldSize; rank++) {
        const worker = { rank, worldSize };
        const held = await collect(
          twoViewBatches(streamOf(inMemory, { data: 4, aug: 7 }, { worker })),
        );
        const streamed = await collect(
          streamedTwoViewBatches(streamOf(ds, { data: 4, aug: 7 }, { worker })),
        );
        expect(streamed).toEqual(held);
        const n = 12 / worldSize;
        held.forEach((b, i) => {
          const w = whole[i]!;
          const rows = (x: number[]) => x.slice(rank * n * px, (rank + 1) * n * px);
          expect(b.indices).toEqual(w.indices.slice(rank * n, (rank + 1) * n));
          expect(b.x1).toEqual(rows(w.x1)); // the whole batch's draws, this worker's rows
          expect(b.x2).toEqual(rows(w.x2));
          expect(b.position).toEqual(w.position); // the streams move as on one process
        });
      }
    }
    const odd = () =>
      collect(
        twoViewBatches(
          streamOf(inMemory, { data: 4, aug: 7 }, { worker: { rank: 0, worldSize: 5 } }),
        ),
      );
    await expect(odd()).rejects.toThrow(/does not divide among 5 workers/);
  });

  it('multi-crop: streamed batches equal in-memory ones crop for crop, and a worker holds its rows of every crop', async () => {
    const files = Array.from({ length: ds.train.n }, (_, i) => ds.train.file(i));
    const { split } = await decodeSplit(files, ds.train.labels, SIZE, true);
    const inMemory: TrainingDataset = { ...ds, train: split };
    const options = (d: TrainingDataset, extra = {}) =>
      streamOf(d, { data: 4, aug: 7 }, { augmentation: multiCrop(d, 7), epochs: 1, ...extra });
    const before = tf.memory().numTensors;
    const whole = await collect(twoViewBatches(options(inMemory)));
    expect(await collect(streamedTwoViewBatches(options(ds)))).toEqual(whole);
    expect(tf.memory().numTensors).toBe(before);
    const b = whole[0]!;
    expect(b.groups).toEqual([
      { name: 'global', start: 0, count: 2, size: [SIZE, SIZE] },
      { name: 'local', start: 2, count: 4, size: [6, 6] },
    ]);
    expect(b.crops.map((c) => c.length)).toEqual([
      ...[1, 1].map(() => 12 * SIZE * SIZE * 3),
      ...[1, 1, 1, 1].map(() => 12 * 36 * 3),
    ]);
    expect([b.crops[0], b.crops[1]]).toEqual([b.x1, b.x2]);
    const worldSize = 2;
    for (let rank = 0; rank < worldSize; rank++) {
      const worker = { rank, worldSize };
      const held = await collect(twoViewBatches(options(inMemory, { worker })));
      expect(await collect(streamedTwoViewBatches(options(ds, { worker })))).toEqual(held);
      held.forEach((h, i) => {
        const w = whole[i]!;
        w.crops.forEach((crop, c) => {
          const px = crop.length / 12; // this crop's values per image
          expect(h.crops[c]).toEqual(crop.slice(rank * 6 * px, (rank + 1) * 6 * px));
        });
        expect(h.position).toEqual(w.position);
      });
    }
  });

  it('one rule for data-parallel batches: the global batch and the last one divide, one coded error', () => {
    const error = (batch: number, n: number, epoch?: { trainSize: number; dropLast: boolean }) => {
      try {
        checkWorkerBatches(batch, n, epoch);
        return undefined;
      } catch (e) {
        return e as { code: string; field: string; message: string; hint: string };
      }
    };
    expect(error(10, 4)).toMatchObject({
      code: 'CONTRAST_CONFIG',
      field: 'optim.batchSize',
      message: expect.stringMatching(/a batch of 10 does not divide among 4 workers/),
      hint: expect.stringMatching(/use a multiple of 4/),
    });
    // 101 = 12 x 8 + 5: the last batch of 5 does not split in 2, unless it is dropped
    expect(error(8, 2, { trainSize: 101, dropLast: false })?.message).toMatch(
      /a batch of 5 does not divide among 2 workers \(the epoch's last batch, with a global batch of 8\)/,
    );
    expect(error(8, 2, { trainSize: 101, dropLast: true })).toBeUndefined();
    expect(error(8, 2, { trainSize: 100, dropLast: false })).toBeUndefined(); // last batch of 4
    expect(error(7, 1, { trainSize: 100, dropLast: false })).toBeUndefined();
  });

  it('decodes JPEG, grey PNG and RGBA PNG to RGB of the asked size', async () => {
    const grey = join(root, 'grey.png');
    await sharp(Buffer.alloc(10 * 6, 77), { raw: { width: 10, height: 6, channels: 1 } })
      .png()
      .toFile(grey);
    const rgba = join(root, 'rgba.png');
    await sharp(Buffer.from(new Uint8Array(8 * 8 * 4).fill(200)), {
      raw: { width: 8, height: 8, channels: 4 },
    })
      .png()
      .toFile(rgba);
    expect(Array.from(await decodeImage(grey, 4))).toEqual(new Array(48).fill(77));
    expect(Array.from(await decodeImage(rgba, 4))).toEqual(new Array(48).fill(200));
    const jpg = await decodeImage(join(root, 'pics', '00000', 'img-00000000.jpg'), 24); // stored at 24x24
    const want = syntheticImage(0, 24);
    let total = 0;
    for (let i = 0; i < want.length; i++) total += Math.abs(jpg[i]! - want[i]!);
    expect(jpg.length).toBe(24 * 24 * 3);
    // JPEG at quality 90 with 4:2:0 chroma: 2.5 levels off on average (up to ~114 at the box's
    // saturated corners, where chroma is shared by 2x2 pixels); R and B swapped: 26, flipped: 34
    expect(total / want.length).toBeLessThan(5);
    await expect(decodeImage(join(root, 'missing.jpg'), 4)).rejects.toThrow();
  });
});

describe('unreadable files in a stream', () => {
  let root: string;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-broken-'));
    await writeSyntheticFolder(join(root, 'pics'), { count: 11, size: 12 });
    writeFileSync(join(root, 'pics', 'img-00000004x.jpg'), 'not a jpeg at all'); // sorts after img-00000004.jpg
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('are skipped, counted once, and replaced by the next readable image; strict refuses them by name', async () => {
    const ds = await openImageFolder({ root: join(root, 'pics'), size: 8, holdout: 0 });
    expect(ds.train.n).toBe(12);
    expect([...ds.mean, ...ds.std].every((v) => Number.isFinite(v) && v > 0)).toBe(true); // from a sample: no held-out images
    const broken = Array.from({ length: 12 }, (_, i) => ds.train.file(i)).findIndex((f) =>
      f.endsWith('4x.jpg'),
    );
    expect(broken).toBe(5);
    const skips: string[] = [];
    const opts = {
      ...streamOf(ds, { data: 1, aug: 1 }),
      batchSize: 12,
      onSkip: (f: string) => skips.push(f),
    };
    const batches = await collect(streamedTwoViewBatches(opts));
    expect(skips).toEqual([ds.train.file(broken)]); // met in both epochs, reported once
    expect([...ds.train.skipped]).toEqual(skips);
    for (const b of batches) {
      expect(b.indices).not.toContain(broken);
      expect(b.indices.filter((i) => i === broken + 1)).toHaveLength(2); // its replacement, twice
      expect(b.x1.every(Number.isFinite)).toBe(true);
    }

    const strict = await openImageFolder({
      root: join(root, 'pics'),
      size: 8,
      holdout: 0,
      strict: true,
    });
    const e = await collect(
      streamedTwoViewBatches({ ...streamOf(strict, { data: 1, aug: 1 }), batchSize: 12 }),
    ).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DatasetError);
    expect((e as Error).message).toContain('img-00000004x.jpg');
  });
});
