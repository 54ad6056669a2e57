import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  ContractError,
  DatasetError,
  isStreamed,
  type ImageSplit,
  type InMemoryDataset,
  type TrainingDataset,
} from '@contrast/core';
import { readIdx } from './idx.js';

/** Where Debian's dataset-fashion-mnist package installs the official files. */
export const FASHION_MNIST_DEBIAN_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_FILES = {
  trainImages: 'train-images-idx3-ubyte.gz',
  trainLabels: 'train-labels-idx1-ubyte.gz',
  testImages: 't10k-images-idx3-ubyte.gz',
  testLabels: 't10k-labels-idx1-ubyte.gz',
} as const;

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const;

/**
 * The folder to read: an explicit root wins, then $CONTRAST_FASHION_MNIST, then
 * Debian's location. An explicit choice that is missing is an error, never a
 * silent fallback to another copy.
 */
export function fashionMnistDir(root?: string): string {
  return root || process.env.CONTRAST_FASHION_MNIST || FASHION_MNIST_DEBIAN_DIR;
}

function loadSplit(dir: string, imagesFile: string, labelsFile: string, n: number): ImageSplit {
  const images = readIdx(join(dir, imagesFile));
  const labels = readIdx(join(dir, labelsFile));
  const [count, h, w] = images.dims;
  if (images.dims.length !== 3 || count !== n || h !== 28 || w !== 28) {
    throw new DatasetError(
      join(dir, imagesFile),
      `expected [${n}, 28, 28] images, found [${images.dims.join(', ')}]`,
      {
        hint: 'use the official Fashion-MNIST files',
      },
    );
  }
  if (labels.dims.length !== 1 || labels.dims[0] !== n) {
    throw new DatasetError(
      join(dir, labelsFile),
      `expected ${n} labels, found [${labels.dims.join(', ')}]`,
    );
  }
  const bad = labels.data.findIndex((l) => l > 9);
  if (bad >= 0)
    throw new DatasetError(
      join(dir, labelsFile),
      `label ${labels.data[bad]} at index ${bad} is not in 0..9`,
    );
  return { images: images.data, labels: labels.data, n };
}

/**
 * Fashion-MNIST (Xiao et al. 2017) with the official 60,000 / 10,000 split,
 * 28x28 grayscale, 10 classes. Mean/std are the training set's.
 */
export function loadFashionMnist(root?: string): InMemoryDataset & { classes: string[] } {
  const dir = fashionMnistDir(root);
  if (!existsSync(join(dir, FASHION_MNIST_FILES.trainImages))) {
    throw new DatasetError(join(dir, FASHION_MNIST_FILES.trainImages), 'Fashion-MNIST not found', {
      hint:
        'on Debian/Ubuntu as root: apt-get install -y dataset-fashion-mnist; elsewhere put the four official ' +
        `files (${Object.values(FASHION_MNIST_FILES).join(', ')}) in a folder and set data.root or CONTRAST_FASHION_MNIST to it`,
    });
  }
  const f = FASHION_MNIST_FILES;
  const train = loadSplit(dir, f.trainImages, f.trainLabels, 60000);
  const test = loadSplit(dir, f.testImages, f.testLabels, 10000);
  const hash = createHash('sha256');
  for (const a of [train.images, train.labels, test.images, test.labels]) hash.update(a);
  return {
    name: 'fashion-mnist',
    height: 28,
    width: 28,
    channels: 1,
    numClasses: 10,
    mean: [0.286],
    std: [0.353],
    providesIndices: true,
    train,
    test,
    source: dir,
    digest: hash.digest('hex').slice(0, 16),
    classes: [...FASHION_MNIST_CLASSES],
  };
}

/**
 * The first n training samples of an in-memory dataset (Fashion-MNIST's
 * training order is already shuffled). A streamed image folder takes its
 * subset when its index is split (openImageFolder's `subset`).
 * @throws ContractError for a streamed dataset.
 */
export function subsetTrain(ds: TrainingDataset, n: number): TrainingDataset {
  if (n <= 0 || n >= ds.train.n) return ds;
  const train = ds.train;
  if (isStreamed(train)) {
    throw new ContractError(`'${ds.name}' is streamed`, {
      hint: "pass the subset to the folder's reader (openImageFolder's subset)",
    });
  }
  const px = ds.height * ds.width * ds.channels;
  return {
    ...ds,
    ...(ds.digest
      ? {
          digest: createHash('sha256')
            .update(`${ds.digest}:train[:${n}]`)
            .digest('hex')
            .slice(0, 16),
        }
      : {}),
    train: {
      images: train.images.subarray(0, n * px),
      labels: train.labels.subarray(0, n),
      n,
    },
  };
}
