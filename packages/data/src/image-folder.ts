import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { DatasetError, type ImageSplit, type TrainingDataset } from '@contrast/core';

export type ImageDecoder = (bytes: Uint8Array, channels: number) => tf.Tensor3D;

export interface ImageFolderOptions {
  /** Decodes JPEG / PNG bytes natively (the backend provides it). */
  decode: ImageDecoder;
  /** Images are resized to size x size on load. */
  size: number;
  /** Fail on the first unreadable file instead of skipping it (default false). */
  strict?: boolean;
}

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.bmp', '.gif']);

function subdirs(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => statSync(join(dir, f)).isDirectory())
    .sort();
}

/** The image files directly in `dir` (by extension: jpg, jpeg, png, bmp, gif), sorted by name. */
export function listImageFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => IMAGE_EXT.has(extname(f).toLowerCase()))
    .sort()
    .map((f) => join(dir, f));
}

/**
 * Decodes and resizes image files as training does: 3 channels, bilinear
 * resize to size x size (half-pixel centres), rounded and clipped to uint8.
 * `images` holds the readable ones in order ([n, size, size, 3] NHWC), `kept`
 * their positions in `paths`; unreadable files are skipped and listed, or
 * refused when strict.
 * @throws DatasetError on the first unreadable file when `options.strict`.
 */
export function readImageFiles(
  paths: readonly string[],
  options: ImageFolderOptions,
): { images: Uint8Array; n: number; kept: number[]; skipped: string[] } {
  const s = options.size;
  const per = s * s * 3;
  const images = new Uint8Array(paths.length * per);
  const kept: number[] = [];
  const skipped: string[] = [];
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
      if (options.strict) {
        throw new DatasetError(path, `unreadable image (${(e as Error).message.split('\n')[0]})`, {
          hint: 'remove or replace the file, or set data.strict: false to skip unreadable files',
          cause: e,
        });
      }
      skipped.push(path);
      continue;
    }
    images.set(pixels, kept.length * per);
    kept.push(i);
  }
  const n = kept.length;
  return { images: images.subarray(0, n * per), n, kept, skipped };
}

function readSplit(
  dir: string,
  classes: string[],
  options: ImageFolderOptions,
): { split: ImageSplit; skipped: string[] } {
  const files: { path: string; label: number }[] = [];
  for (const [label, name] of classes.entries()) {
    const cdir = join(dir, name);
    if (!existsSync(cdir)) continue;
    for (const path of listImageFiles(cdir)) files.push({ path, label });
  }
  const read = readImageFiles(
    files.map((f) => f.path),
    options,
  );
  const labels = Uint8Array.from(read.kept, (i) => files[i]!.label);
  return { split: { images: read.images, labels, n: read.n }, skipped: read.skipped };
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

/**
 * An ImageNet-style folder: `train/<class>/*.jpg|png` and `test/` (or `val/`)
 * with the same class folders; classes are the sorted sub-folder names of
 * train/. Images are decoded natively, resized to size x size, held as uint8.
 * Unreadable files are skipped and counted (`skipped`), or refused when strict.
 * Normalisation statistics are the training split's.
 */
export function loadImageFolder(
  root: string,
  options: ImageFolderOptions,
): TrainingDataset & { skipped: string[]; classes: string[] } {
  const trainDir = join(root, 'train');
  const testDir = ['test', 'val'].map((d) => join(root, d)).find((d) => existsSync(d));
  if (!existsSync(trainDir) || !testDir) {
    throw new DatasetError(root, 'an image folder needs train/ and test/ (or val/) sub-folders', {
      hint: 'lay it out as root/train/<class>/*.jpg and root/test/<class>/*.jpg',
    });
  }
  const classes = subdirs(trainDir);
  if (classes.length === 0 || classes.length > 255) {
    throw new DatasetError(trainDir, `found ${classes.length} class folders; need 1 to 255`);
  }
  const extra = subdirs(testDir).filter((c) => !classes.includes(c));
  if (extra.length) {
    throw new DatasetError(testDir, `class folders not in train/: ${extra.join(', ')}`);
  }
  const train = readSplit(trainDir, classes, options);
  const test = readSplit(testDir, classes, options);
  if (train.split.n === 0) throw new DatasetError(trainDir, 'no readable images');
  const { mean, std } = channelStats(train.split.images, 3);
  const h = createHash('sha256');
  for (const s of [train.split, test.split]) h.update(s.images).update(s.labels);
  return {
    name: 'image-folder',
    height: options.size,
    width: options.size,
    channels: 3,
    numClasses: classes.length,
    mean,
    std,
    providesIndices: true,
    train: train.split,
    test: test.split,
    source: root,
    digest: h.digest('hex').slice(0, 16),
    skipped: [...train.skipped, ...test.skipped],
    classes,
  };
}
