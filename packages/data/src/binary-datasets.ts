import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { DatasetError, type ImageSplit, type InMemoryDataset } from '@contrast/core';

/**
 * The binary distributions of CIFAR-10, CIFAR-100 (Krizhevsky 2009) and
 * STL-10 (Coates et al. 2011), read into NHWC uint8 with every sample's index.
 *   CIFAR-10:  data_batch_{1..5}.bin, test_batch.bin; records <label><3072 bytes: R, G, B planes, row-major>
 *   CIFAR-100: train.bin, test.bin; records <coarse><fine><3072 bytes>
 *   STL-10:    {train,test}_X.bin (N x 3 x 96 x 96, each plane column-major), {train,test}_y.bin (1..10),
 *              unlabeled_X.bin (100,000 images for pre-training)
 */

/** Reads a whole file into a Uint8Array, also past the 2 GiB a single read allows. */
function readAll(file: string): Uint8Array {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const out = new Uint8Array(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, out, off, Math.min(1 << 30, size - off), off);
      if (n === 0) break;
      off += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

function need(dir: string, file: string, hint: string): string {
  const path = join(dir, file);
  if (!existsSync(path)) throw new DatasetError(path, 'missing', { hint });
  return path;
}

/** CIFAR records: label byte(s) then 32x32x3 in planes; `labelAt` picks the label byte. */
function readCifarRecords(
  files: string[],
  labelBytes: number,
  labelAt: number,
  numClasses: number,
): ImageSplit {
  const px = 32 * 32;
  const record = labelBytes + 3 * px;
  const bufs = files.map((f) => {
    const b = readAll(f);
    if (b.length === 0 || b.length % record !== 0) {
      throw new DatasetError(
        f,
        `size ${b.length} is not a whole number of ${record}-byte records: truncated or not a CIFAR binary file`,
        { hint: 'download the binary version again (cifar-*-binary.tar.gz)' },
      );
    }
    return b;
  });
  const n = bufs.reduce((s, b) => s + b.length / record, 0);
  const images = new Uint8Array(n * 3 * px);
  const labels = new Uint8Array(n);
  let i = 0;
  for (const [fi, b] of bufs.entries()) {
    for (let r = 0; r < b.length / record; r++, i++) {
      const base = r * record;
      const label = b[base + labelAt]!;
      if (label >= numClasses) {
        throw new DatasetError(
          files[fi]!,
          `record ${r} has label ${label}, outside 0..${numClasses - 1}`,
          {
            hint: 'the file is corrupt, or is not the dataset it is named after',
          },
        );
      }
      labels[i] = label;
      const src = base + labelBytes;
      const dst = i * 3 * px;
      for (let p = 0; p < px; p++) {
        images[dst + 3 * p] = b[src + p]!;
        images[dst + 3 * p + 1] = b[src + px + p]!;
        images[dst + 3 * p + 2] = b[src + 2 * px + p]!;
      }
    }
  }
  return { images, labels, n };
}

function digestOf(splits: ImageSplit[]): string {
  const h = createHash('sha256');
  for (const s of splits) h.update(s.images).update(s.labels);
  return h.digest('hex').slice(0, 16);
}

const rgb = { height: 32, width: 32, channels: 3, providesIndices: true } as const;

export function loadCifar10(root: string): InMemoryDataset {
  const hint = 'put the files of cifar-10-binary.tar.gz (cifar-10-batches-bin/) in data.root';
  const train = readCifarRecords(
    [1, 2, 3, 4, 5].map((i) => need(root, `data_batch_${i}.bin`, hint)),
    1,
    0,
    10,
  );
  const test = readCifarRecords([need(root, 'test_batch.bin', hint)], 1, 0, 10);
  return cifarDataset('cifar10', root, { train, test }, 10, {
    mean: [0.4914, 0.4822, 0.4465],
    std: [0.247, 0.2435, 0.2616],
  });
}

function cifarDataset(
  name: string,
  root: string,
  splits: { train: ImageSplit; test: ImageSplit },
  numClasses: number,
  stats: { mean: number[]; std: number[] },
): InMemoryDataset {
  return {
    name,
    ...rgb,
    numClasses,
    ...stats,
    ...splits,
    source: root,
    digest: digestOf([splits.train, splits.test]),
  };
}

/** CIFAR-100 with its 100 fine labels. */
export function loadCifar100(root: string): InMemoryDataset {
  const hint = 'put the files of cifar-100-binary.tar.gz (cifar-100-binary/) in data.root';
  const train = readCifarRecords([need(root, 'train.bin', hint)], 2, 1, 100);
  const test = readCifarRecords([need(root, 'test.bin', hint)], 2, 1, 100);
  return cifarDataset('cifar100', root, { train, test }, 100, {
    mean: [0.5071, 0.4865, 0.4409],
    std: [0.2673, 0.2564, 0.2762],
  });
}

/** STL-10 images: N x 3 x 96 x 96 with each channel plane stored column-major. */
function readStlImages(file: string): { images: Uint8Array; n: number } {
  const side = 96;
  const per = 3 * side * side;
  const b = readAll(file);
  if (b.length === 0 || b.length % per !== 0) {
    throw new DatasetError(
      file,
      `size ${b.length} is not a whole number of 96x96x3 images: truncated`,
      {
        hint: 'download stl10_binary.tar.gz again',
      },
    );
  }
  const n = b.length / per;
  const images = new Uint8Array(b.length);
  for (let i = 0; i < n; i++) {
    const base = i * per;
    for (let c = 0; c < 3; c++) {
      for (let x = 0; x < side; x++) {
        for (let y = 0; y < side; y++) {
          images[base + (y * side + x) * 3 + c] = b[base + c * side * side + x * side + y]!;
        }
      }
    }
  }
  return { images, n };
}

function readStlSplit(root: string, name: 'train' | 'test', hint: string): ImageSplit {
  const xFile = need(root, `${name}_X.bin`, hint);
  const yFile = need(root, `${name}_y.bin`, hint);
  const { images, n } = readStlImages(xFile);
  const raw = readAll(yFile);
  if (raw.length !== n) {
    throw new DatasetError(yFile, `${raw.length} labels for ${n} images in ${xFile}`, {
      hint: 'the two files come from different downloads, or one is truncated',
    });
  }
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (raw[i]! < 1 || raw[i]! > 10) {
      throw new DatasetError(yFile, `label ${raw[i]} at index ${i} is outside 1..10`);
    }
    labels[i] = raw[i]! - 1;
  }
  return { images, labels, n };
}

/**
 * STL-10 at 96x96. `unlabeled: true` pre-trains on the 100,000 unlabeled images
 * plus the 5,000 labeled training images (as the STL-10 protocol intends); kNN
 * and the linear probe then use the labeled training split (`evalTrain`).
 */
export function loadStl10(root: string, options: { unlabeled?: boolean } = {}): InMemoryDataset {
  const hint = 'put the files of stl10_binary.tar.gz (stl10_binary/) in data.root';
  const train = readStlSplit(root, 'train', hint);
  const test = readStlSplit(root, 'test', hint);
  const base = {
    name: options.unlabeled ? 'stl10-unlabeled' : 'stl10',
    height: 96,
    width: 96,
    channels: 3,
    providesIndices: true,
    numClasses: 10,
    mean: [0.4467, 0.4398, 0.4066],
    std: [0.2603, 0.2566, 0.2713],
    test,
    source: root,
  };
  if (!options.unlabeled) return { ...base, train, digest: digestOf([train, test]) };
  const un = readStlImages(need(root, 'unlabeled_X.bin', hint));
  const n = un.n + train.n;
  const images = new Uint8Array(n * 96 * 96 * 3);
  images.set(un.images, 0);
  images.set(train.images, un.images.length);
  // labels of unlabeled images are unknown; 255 marks them (never used: evaluation reads evalTrain)
  const labels = new Uint8Array(n).fill(255);
  labels.set(train.labels, un.n);
  const pretrain = { images, labels, n };
  return { ...base, train: pretrain, evalTrain: train, digest: digestOf([pretrain, test]) };
}
