import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  ConfigError,
  DatasetError,
  type ImageSplit,
  type StreamedSplit,
  type TrainingDataset,
} from '@contrast/core';
import { decodeImage, decodeSplit, firstLine, unreadable } from './image-decode.js';
import {
  indexDigest,
  indexLabels,
  openIndex,
  pathHash,
  splitIndex,
  type ImageIndex,
  type OpenedIndex,
} from './image-index.js';

export type LabelSource = 'auto' | 'folders' | 'csv' | 'none';

export interface ImageFolderOptions {
  /** The folder of training images (scanned recursively), or a root with train/ and test/ (or val/). */
  root?: string;
  /** A file list (.txt, or .csv with path[,label]) instead of scanning `root`. */
  files?: string;
  /** Side of the square images are decoded and resized to. */
  size: number;
  /** Fail on the first unreadable (or missing listed) file instead of skipping and counting it. */
  strict?: boolean;
  labels?: LabelSource;
  /** Training images held out as the test split when there is none (default 1000 then). */
  holdout?: number;
  /** Labelled evaluation images: folders of class sub-folders or labelled .csv lists. */
  eval?: { train?: string; test?: string; trainSize?: number };
  shard?: { index: number; count: number };
  /** Train on this many images (a fixed choice by path hash; 0 = all). */
  subset?: number;
}

/** A streamed image folder: the dataset plus what reading it found. */
export type ImageFolderDataset = TrainingDataset & {
  readonly train: StreamedSplit;
  /** Class names of the labels kNN and the probe use ([] when unlabelled). */
  readonly classes: string[];
  /** Files skipped while loading: missing list entries, unreadable evaluation images. */
  readonly skipped: string[];
  /** How the training index was obtained. */
  readonly index: { entries: number; cached: boolean; cacheFile?: string; seconds: number };
};

/** Decodes encoded image bytes to [H, W, channels] (the backend's native decoder). */
export type ImageDecoder = (bytes: Uint8Array, channels: number) => tf.Tensor3D;

/** How `readImageFiles` decodes (export and embed read image files with it). */
export interface ImageFileOptions {
  /** Decodes JPEG / PNG bytes natively (the backend provides it). */
  decode: ImageDecoder;
  /** Images are resized to size x size on load. */
  size: number;
  /** Fail on the first unreadable file instead of skipping it (default false). */
  strict?: boolean;
  /** How the user turns `strict` off, for its error's fix (default 'set data.strict: false'). */
  lenient?: string;
}

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.bmp', '.gif']);

/** The image files directly in `dir` (by extension: jpg, jpeg, png, bmp, gif), sorted by name. */
export function listImageFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => IMAGE_EXT.has(extname(f).toLowerCase()))
    .sort()
    .map((f) => join(dir, f));
}

/**
 * Decodes and resizes image files with the backend's decoder and tfjs: 3
 * channels, bilinear resize to size x size (half-pixel centres), rounded and
 * clipped to uint8 — what the exported web page does in the browser
 * (`resizeAsTraining` in @contrast/export). Streamed training decodes with
 * libvips instead (`decodeImage`: EXIF orientation, Lanczos-3 reduce).
 * `images` holds the readable ones in order ([n, size, size, 3] NHWC), `kept`
 * their positions in `paths`; unreadable files are skipped and listed (`reasons`:
 * the first line of each one's error), or refused when strict.
 * @throws DatasetError on the first unreadable file when `options.strict`.
 */
export function readImageFiles(
  paths: readonly string[],
  options: ImageFileOptions,
): { images: Uint8Array; n: number; kept: number[]; skipped: string[]; reasons: string[] } {
  const s = options.size;
  const per = s * s * 3;
  const images = new Uint8Array(paths.length * per);
  const kept: number[] = [];
  const skipped: string[] = [];
  const reasons: string[] = [];
  for (const [i, path] of paths.entries()) {
    let pixels: ArrayLike<number>;
    try {
      const t = tf.tidy(() => {
        const img = options.decode(readFileSync(path), 3);
        const resized = tf.image.resizeBilinear(img, [s, s], false, true);
        return tf.cast(tf.clipByValue(tf.round(resized), 0, 255), 'int32');
      });
      pixels = t.dataSync();
      t.dispose();
    } catch (e) {
      if (options.strict) throw unreadable(path, e, options.lenient);
      skipped.push(path);
      reasons.push(firstLine(e));
      continue;
    }
    images.set(pixels, kept.length * per);
    kept.push(i);
  }
  const n = kept.length;
  return { images: images.subarray(0, n * per), n, kept, skipped, reasons };
}

/** Where the training images and a test folder are: a classic train/ + test/ (or val/) layout, or not. */
function layout(options: ImageFolderOptions): {
  from: { root: string } | { files: string };
  testDir?: string;
} {
  if (options.files) return { from: { files: options.files } };
  const root = resolve(options.root ?? join('data', 'images'));
  const train = join(root, 'train');
  if (!existsSync(train) || !statSync(train).isDirectory()) return { from: { root } };
  const testDir = ['test', 'val'].map((d) => join(root, d)).find((d) => existsSync(d));
  return { from: { root: train }, ...(testDir ? { testDir } : {}) };
}

/** The label source in effect: 'auto' resolved against what the index offers. */
function labelSource(options: ImageFolderOptions, index: ImageIndex, classic: boolean) {
  const asked = options.labels ?? 'auto';
  if (asked === 'csv' && !index.labels) {
    throw new ConfigError('data.labels', `'csv' needs a .csv list with a label column`, {
      hint: 'give data.files a .csv whose header names path and label, or set data.labels: none',
    });
  }
  if (asked !== 'auto') return asked;
  return index.labels ? 'csv' : classic ? 'folders' : 'none';
}

/** A labelled folder or .csv list given as data.eval.train / data.eval.test. */
function openLabelled(
  path: string,
  field: string,
  strict: boolean,
): OpenedIndex & { from: 'csv' | 'folders' } {
  const isList = existsSync(path) && statSync(path).isFile();
  if (isList && extname(path).toLowerCase() !== '.csv') {
    throw new ConfigError(field, `${path} is a list without labels`, {
      hint: 'use a folder of class sub-folders or a .csv whose header names path and label',
    });
  }
  const opened = openIndex(isList ? { files: path } : { root: path }, { strict });
  if (isList && !opened.index.labels) {
    throw new ConfigError(field, `${path} has no label column`, {
      hint: "add a 'label' column (class names) to the header and rows",
    });
  }
  return { ...opened, from: isList ? 'csv' : 'folders' };
}

const absolute = (index: ImageIndex, positions: readonly number[]) =>
  positions.map((i) => join(index.base, index.paths[i]!));

/** The first `k` positions by path hash (a fixed sample), in index order; all when k is 0. */
function sample(index: ImageIndex, positions: number[], k: number): number[] {
  if (k <= 0 || k >= positions.length) return positions;
  const h = positions.map((i) => [pathHash(index.paths[i]!)[0], i] as const);
  return h
    .sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .slice(0, k)
    .map(([, i]) => i)
    .sort((a, b) => a - b);
}

/**
 * An image folder or file list of any size, streamed: the index is listed once
 * (and cached, see openIndex), training images are decoded from disk when a
 * batch needs them (`streamedTwoViewBatches`), and only the evaluation images
 * are decoded into memory here. Labels come from class sub-folders or a CSV
 * (`labels`), or there are none. kNN and the linear probe use data.eval.train
 * (or the labelled training images, a sample of eval.trainSize) as the bank and
 * data.eval.test, the layout's test/ (or val/), or held-out training images as
 * the evaluated set; without labelled ones the dataset says why (`unlabelled`).
 * Normalisation statistics come from held-out or bank images of the training
 * folder, else from a sample of 1000 training images.
 * @throws DatasetError for a missing folder or list, a malformed list, bad class folders, or (strict) an unreadable file.
 * @throws ConfigError naming the data field when options contradict each other.
 */
export async function openImageFolder(options: ImageFolderOptions): Promise<ImageFolderDataset> {
  const t0 = performance.now();
  const strict = options.strict ?? false;
  const where = layout(options);
  const opened = openIndex(where.from, { strict });
  const indexSeconds = (performance.now() - t0) / 1000;
  const { index } = opened;
  const from = labelSource(options, index, where.testDir !== undefined);
  const testPath = options.eval?.test ?? where.testDir;
  if (testPath && options.holdout) {
    throw new ConfigError('data.holdout', `there is a test split already (${testPath})`, {
      hint: 'remove data.holdout: held-out images are only the test split when there is none',
    });
  }
  const holdout = testPath ? 0 : (options.holdout ?? 1000);
  let split: ReturnType<typeof splitIndex>;
  try {
    split = splitIndex(index, {
      holdout,
      ...(options.shard ? { shard: options.shard } : {}),
      subset: options.subset ?? 0,
    });
  } catch (e) {
    // a few unreadable files fall foul of the default holdout: blame them, not data.holdout
    const all = index.paths.map((_, i) => i);
    await readableSample(absolute(index, spaced(all)), options.size, index.source, all.length);
    throw e;
  }
  if (split.train.length === 0) {
    throw new ConfigError('data.root', `${index.source} has no images to train on`, {
      hint: 'point data.root (or data.files) at your images (.jpg, .png, .webp, .gif, .tif, .avif)',
    });
  }
  const trainLabels =
    from === 'none'
      ? { labels: new Uint8Array(split.train.length).fill(255), classes: [] as string[] }
      : indexLabels(index, split.train, from);
  const evalSplits = await evaluationImages(options, { index, split, from, trainLabels, testPath });
  const train = streamedSplit(index, split.train, trainLabels.labels, options.size, strict);
  const stats = evalSplits.stats ?? (await sampleStats(train, options.size, index.source));
  return {
    name: 'image-folder',
    height: options.size,
    width: options.size,
    channels: 3,
    numClasses: evalSplits.classes.length,
    ...stats,
    providesIndices: true,
    train,
    test: evalSplits.test,
    ...(evalSplits.bank ? { evalTrain: evalSplits.bank } : {}),
    ...(evalSplits.unlabelled ? { unlabelled: evalSplits.unlabelled } : {}),
    source: index.source,
    digest: indexDigest(index, split.train, `${options.size}:${evalSplits.digest}`),
    classes: evalSplits.classes,
    skipped: [...opened.missing, ...evalSplits.skipped],
    index: {
      entries: index.paths.length,
      cached: opened.cached,
      ...(opened.cacheFile ? { cacheFile: opened.cacheFile } : {}),
      seconds: indexSeconds,
    },
  };
}

interface TrainingIndex {
  index: ImageIndex;
  split: { train: number[]; heldOut: number[] };
  from: LabelSource;
  trainLabels: { labels: Uint8Array; classes: string[] };
  testPath: string | undefined;
}

/**
 * The in-memory evaluation splits: the bank (data.eval.train, else a sample of
 * the labelled training images) and the test split (data.eval.test or the
 * layout's test folder, else the held-out images), decoded; the reason kNN
 * cannot run when either is missing or unlabelled.
 */
async function evaluationImages(options: ImageFolderOptions, t: TrainingIndex) {
  const strict = options.strict ?? false;
  const trainSize = options.eval?.trainSize ?? 10000;
  const skipped: string[] = [];
  const decode = async (files: string[], labels: Uint8Array) => {
    const r = await decodeSplit(files, labels, options.size, strict);
    skipped.push(...r.skipped);
    return r.split;
  };
  let bank: ImageSplit | undefined;
  let classes: string[] = [];
  let bankFromTraining = false;
  if (options.eval?.train) {
    const e = openLabelled(options.eval.train, 'data.eval.train', strict);
    const pos = sample(
      e.index,
      e.index.paths.map((_, i) => i),
      trainSize,
    );
    const l = indexLabels(e.index, pos, e.from);
    bank = await decode(absolute(e.index, pos), l.labels);
    classes = l.classes;
  } else if (t.from !== 'none') {
    const pos = sample(t.index, t.split.train, trainSize);
    const at = new Map(t.split.train.map((p, k) => [p, k]));
    const labels = Uint8Array.from(pos, (p) => t.trainLabels.labels[at.get(p)!]!);
    bank = await decode(absolute(t.index, pos), labels);
    classes = t.trainLabels.classes;
    bankFromTraining = true;
  }
  const test = await testImages(t, classes, bank !== undefined, options.eval?.test, strict, decode);
  const unlabelled = !bank
    ? 'the training images are unlabelled and data.eval.train is not set'
    : !test.labelled
      ? 'the test split (held-out training images) is unlabelled'
      : undefined;
  const fromTraining = [
    test.heldOut ? test.split : undefined,
    bankFromTraining ? bank : undefined,
  ].find((s) => s !== undefined && s.n > 0);
  return {
    bank,
    test: test.split,
    classes: unlabelled ? [] : classes,
    skipped,
    digest: `${bank?.n ?? 0}:${test.split.n}`,
    ...(unlabelled
      ? {
          unlabelled: `${unlabelled}; kNN and the linear probe need labelled images: set data.eval.train and data.eval.test (folders of class sub-folders or .csv lists with a label column)`,
        }
      : {}),
    ...(fromTraining ? { stats: channelStats(fromTraining.images, 3) } : {}),
  };
}

/** The test split: a labelled folder or list, or the held-out training images. */
async function testImages(
  t: TrainingIndex,
  classes: string[],
  hasBank: boolean,
  evalTest: string | undefined,
  strict: boolean,
  decode: (files: string[], labels: Uint8Array) => Promise<ImageSplit>,
): Promise<{ split: ImageSplit; labelled: boolean; heldOut: boolean }> {
  if (t.testPath) {
    const e = evalTest
      ? openLabelled(evalTest, 'data.eval.test', strict)
      : { ...openIndex({ root: t.testPath }, { strict }), from: 'folders' as const };
    const pos = e.index.paths.map((_, i) => i);
    const labels = hasBank
      ? indexLabels(e.index, pos, e.from, classes).labels
      : new Uint8Array(pos.length).fill(255);
    return {
      split: await decode(absolute(e.index, pos), labels),
      labelled: hasBank,
      heldOut: false,
    };
  }
  const pos = t.split.heldOut;
  const labelled = hasBank && t.from !== 'none';
  const labels = labelled
    ? indexLabels(t.index, pos, t.from as 'csv' | 'folders', classes).labels
    : new Uint8Array(pos.length).fill(255);
  return { split: await decode(absolute(t.index, pos), labels), labelled, heldOut: true };
}

/** The streamed training split over index positions `train`. */
function streamedSplit(
  index: ImageIndex,
  train: number[],
  labels: Uint8Array,
  size: number,
  strict: boolean,
): StreamedSplit {
  const positions = Int32Array.from(train);
  const file = (i: number) => join(index.base, index.paths[positions[i]!]!);
  return {
    kind: 'streamed',
    n: positions.length,
    labels,
    read: (i) => decodeImage(file(i), size),
    file,
    skipped: new Set<string>(),
    strict,
  };
}

/** Up to `k` of `positions`, evenly spaced (all of them when there are at most `k`). */
function spaced<T>(positions: readonly T[], k = 1000): T[] {
  const step = Math.max(1, Math.floor(positions.length / k));
  return Array.from({ length: Math.min(k, positions.length) }, (_, i) => positions[i * step]!);
}

/**
 * Decodes `files`, a sample of the `total` training images of `source`; none
 * readable means the folder cannot be trained on, whatever the other settings.
 * @throws DatasetError saying how many could not be read, the first and why, and the fix.
 */
async function readableSample(
  files: string[],
  size: number,
  source: string,
  total: number,
): Promise<ImageSplit> {
  const { split, skipped } = await decodeSplit(files, new Uint8Array(files.length), size, false);
  if (split.n > 0 || files.length === 0) return split;
  const first = skipped[0]!;
  const why = await decodeImage(first, size).then(() => 'read on a second try', firstLine);
  const none =
    files.length === total
      ? `none of its ${total} image files can be read`
      : `none of ${files.length} image files sampled from its ${total} can be read`;
  throw new DatasetError(source, `${none} (the first: ${first}: ${why})`, {
    hint: 'replace or convert them to JPEG, PNG, WebP, GIF, TIFF or AVIF, or point data.root (or data.files) at readable images',
  });
}

/** Mean and std of a fixed sample of up to 1000 training images (unreadable ones left out). */
async function sampleStats(train: StreamedSplit, size: number, source: string) {
  const files = spaced(Array.from({ length: train.n }, (_, i) => i)).map((i) => train.file(i));
  return channelStats((await readableSample(files, size, source, train.n)).images, 3);
}

/** Per-channel mean and std of uint8 NHWC pixels, on [0, 1]. */
export function channelStats(
  images: Uint8Array,
  channels: number,
): { mean: number[]; std: number[] } {
  const sum = new Float64Array(channels);
  const sq = new Float64Array(channels);
  for (let i = 0; i < images.length; i++) {
    const v = images[i]! / 255;
    sum[i % channels]! += v;
    sq[i % channels]! += v * v;
  }
  const count = images.length / channels;
  const mean = Array.from(sum, (s) => s / count);
  const std = Array.from(sq, (q, c) => Math.sqrt(Math.max(1e-12, q / count - mean[c]! ** 2)));
  return { mean, std };
}
