import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  AugmentationSchema,
  Rng,
  writeFileAtomic,
  type AugmentationConfig,
  type Encoder,
  type TrainingDataset,
} from '@contrast/core';
import { BatchAugmentation, gatherPixels, loadFashionMnist, type ViewParams } from '@contrast/data';
import { nhwcToNchw } from '@contrast/models';
import { writeNpy } from './npy.js';
import { exportWeights } from './step.js';
import { runPython } from './python.js';

/** One comparison: an augmentation config on one image set, and what is compared. */
export interface AugmentCase {
  name: string;
  /** The transform it isolates (the report groups differences by it). */
  transform: string;
  images: 'fashion-mnist' | 'rgb';
  augmentation: Record<string, unknown>;
  /** Also compare the frozen encoder's loss on two views per image. */
  loss?: boolean;
}

/** The default experiment's augmentation (experiments/moco-fmnist.yaml). */
const DEFAULT_AUGMENTATION = {
  crop: { scale: [0.2, 1] as [number, number] },
  flip: 0.5,
  jitter: { brightness: 0.4, contrast: 0.4, p: 0.8 },
};
const still = { crop: { scale: [1, 1], ratio: [1, 1] }, flip: 0, jitter: { p: 0 } };
/** ColorJitter alone (p 0.8) with the given factors, e.g. ColorJitter(hue 0.1). */
function jitterCase(
  transform: string,
  images: AugmentCase['images'],
  factors: Record<string, number>,
): AugmentCase {
  const args = Object.entries(factors).map(([k, v]) => `${k} ${v}`);
  return {
    name: `ColorJitter(${args.join(', ')}), p 0.8`,
    transform,
    images,
    augmentation: { ...still, jitter: { brightness: 0, contrast: 0, p: 0.8, ...factors } },
  };
}

/** The cases: each transform alone, then the default experiment's and MoCo v2's pipelines. */
export const AUGMENT_CASES: AugmentCase[] = [
  {
    name: 'RandomResizedCrop(28, scale 0.2-1)',
    transform: 'crop',
    images: 'fashion-mnist',
    augmentation: { ...still, crop: { scale: [0.2, 1] } },
  },
  {
    name: 'RandomResizedCrop(16, scale 0.2-1): downscaling',
    transform: 'crop',
    images: 'fashion-mnist',
    augmentation: { ...still, crop: { size: 16, scale: [0.2, 1] } },
  },
  {
    name: 'RandomHorizontalFlip(0.5)',
    transform: 'flip',
    images: 'fashion-mnist',
    augmentation: { ...still, flip: 0.5 },
  },
  jitterCase('brightness', 'fashion-mnist', { brightness: 0.4 }),
  jitterCase('contrast', 'fashion-mnist', { contrast: 0.4 }),
  jitterCase('jitter order', 'fashion-mnist', { brightness: 0.4, contrast: 0.4 }),
  jitterCase('saturation', 'rgb', { saturation: 0.4 }),
  jitterCase('hue', 'rgb', { hue: 0.1 }),
  jitterCase('jitter order', 'rgb', { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 }),
  {
    name: 'RandomGrayscale(0.2)',
    transform: 'grayscale',
    images: 'rgb',
    augmentation: { ...still, grayscale: 0.2 },
  },
  {
    name: 'GaussianBlur (PIL, sigma 0.1-2), p 0.5',
    transform: 'blur',
    images: 'fashion-mnist',
    augmentation: { ...still, blur: { p: 0.5, sigma: [0.1, 2] } },
  },
  {
    name: 'default experiment: crop 0.2-1, flip, ColorJitter(0.4, 0.4) p 0.8',
    transform: 'pipeline',
    images: 'fashion-mnist',
    augmentation: DEFAULT_AUGMENTATION,
    loss: true,
  },
  {
    name: 'the same + blur (PIL, sigma 0.1-2) p 0.5',
    transform: 'pipeline',
    images: 'fashion-mnist',
    augmentation: { ...DEFAULT_AUGMENTATION, blur: { p: 0.5, sigma: [0.1, 2] } },
    loss: true,
  },
  {
    name: "MoCo v2's aug+ on RGB",
    transform: 'pipeline',
    images: 'rgb',
    augmentation: {
      crop: { scale: [0.2, 1] },
      flip: 0.5,
      jitter: { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1, p: 0.8 },
      grayscale: 0.2,
      blur: { p: 0.5, sigma: [0.1, 2] },
    },
  },
];

/**
 * RGB test images from Fashion-MNIST: each image's gray level x blends two
 * colours drawn per image, c1 x + c2 (1 - x), so hue, saturation and
 * grayscale have colour to act on. uint8 NHWC.
 */
export function colourise(gray: Uint8Array, n: number, seed: number): Uint8Array {
  const rng = new Rng(seed);
  const px = 28 * 28;
  const out = new Uint8Array(n * px * 3);
  for (let i = 0; i < n; i++) {
    const c1 = [rng.next(), rng.next(), rng.next()];
    const c2 = [rng.next(), rng.next(), rng.next()];
    for (let p = 0; p < px; p++) {
      const x = gray[i * px + p]! / 255;
      for (let c = 0; c < 3; c++)
        out[(i * px + p) * 3 + c] = Math.round(255 * (c1[c]! * x + c2[c]! * (1 - x)));
    }
  }
  return out;
}

/** Per-view statistics: crop area fraction and aspect, and pixel statistics of the view in [0, 1]. */
export const VIEW_STATS = ['area', 'aspect', 'mean', 'std', 'leftMinusRight', 'chroma'] as const;

function viewStats(
  views: tf.Tensor4D,
  p: ViewParams,
  H: number,
  W: number,
): Record<string, Float32Array> {
  const n = views.shape[0];
  const area = Float32Array.from(
    { length: n },
    (_, i) => (p.crops[i * 4 + 2]! * p.crops[i * 4 + 3]!) / (H * W),
  );
  const aspect = Float32Array.from(
    { length: n },
    (_, i) => p.crops[i * 4 + 3]! / p.crops[i * 4 + 2]!,
  );
  const px = tf.tidy(() => {
    const [, h, w] = views.shape;
    const half = Math.floor(w / 2);
    const mean = tf.mean(views, [1, 2, 3]);
    const std = tf.sqrt(
      tf.mean(tf.square(tf.sub(views, tf.reshape(mean, [-1, 1, 1, 1]))), [1, 2, 3]),
    );
    const left = tf.mean(tf.slice(views, [0, 0, 0, 0], [n, h, half, -1]), [1, 2, 3]);
    const right = tf.mean(tf.slice(views, [0, 0, w - half, 0], [n, h, half, -1]), [1, 2, 3]);
    const chroma = tf.mean(tf.sub(tf.max(views, 3), tf.min(views, 3)), [1, 2]);
    return [mean, std, tf.sub(left, right), chroma];
  });
  const [mean, std, lr, chroma] = px.map((t) => t.dataSync() as Float32Array);
  tf.dispose(px);
  return { area, aspect, mean: mean!, std: std!, leftMinusRight: lr!, chroma: chroma! };
}

/** The size of an augmentation-parity run. */
export interface AugmentOptions {
  /** Views per case for the distributions (one per image). */
  views: number;
  /** Images for the frozen-encoder loss (two views each, batches of 256). */
  lossImages: number;
  seed: number;
}

export const DEFAULT_AUGMENT_OPTIONS: AugmentOptions = { views: 10000, lossImages: 4096, seed: 0 };

function augmentInBatches(
  aug: BatchAugmentation,
  ds: TrainingDataset,
  images: Uint8Array,
  count: number,
): { views: tf.Tensor4D; params: ViewParams[] } {
  const parts: tf.Tensor4D[] = [];
  const params: ViewParams[] = [];
  const split = { images, labels: new Uint8Array(count), n: count };
  for (let s = 0; s < count; s += 1000) {
    const idx = Array.from({ length: Math.min(1000, count - s) }, (_, i) => s + i);
    const p = aug.drawParams(idx.length);
    params.push(p);
    parts.push(tf.tidy(() => aug.augment(gatherPixels(split, idx, ds), p)));
  }
  const views = tf.concat(parts) as tf.Tensor4D;
  tf.dispose(parts);
  return { views, params };
}

/** Concatenates per-batch draws (crops only: what the statistics read). */
function joinParams(ps: ViewParams[]): ViewParams {
  const crops = new Int32Array(ps.reduce((a, p) => a + p.crops.length, 0));
  let o = 0;
  for (const p of ps) {
    crops.set(p.crops, o);
    o += p.crops.length;
  }
  return {
    crops,
    flips: new Uint8Array(0),
    brightness: new Float32Array(0),
    contrast: new Float32Array(0),
  };
}

/**
 * Contrast's side of the augmentation parity: for each case, views of the first
 * `views` images and their statistics (and two views per image for the loss
 * cases), written with the images, the configs and the frozen encoder's weights
 * to `dir` for python/augment.py.
 */
export function writeContrastViews(
  dir: string,
  o: AugmentOptions,
  frozen: { encoder: Encoder; model: unknown },
): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'encoder'), { recursive: true });
  const fm = loadFashionMnist();
  const n = Math.max(o.views, o.lossImages);
  const sets = {
    'fashion-mnist': { ds: fm, images: fm.train.images.subarray(0, n * 784) },
    rgb: {
      ds: { ...fm, channels: 3, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] },
      images: colourise(fm.train.images, n, o.seed + 1),
    },
  };
  for (const [name, s] of Object.entries(sets)) {
    writeNpy(join(dir, `images-${name}.npy`), {
      data: s.images,
      shape: [n, 28, 28, s.ds.channels],
    });
  }
  exportWeights(join(dir, 'encoder'), frozen.encoder.namedVariables());
  const cases = AUGMENT_CASES.map((c, k) => {
    const config: AugmentationConfig = AugmentationSchema.parse(c.augmentation);
    const { ds, images } = sets[c.images];
    const aug = new BatchAugmentation(config, ds, new Rng(o.seed * 1000 + k));
    const { views, params } = augmentInBatches(aug, ds, images, o.views);
    const stats = viewStats(views, joinParams(params), 28, 28);
    views.dispose();
    for (const [stat, a] of Object.entries(stats))
      writeNpy(join(dir, `case${k}-${stat}.npy`), { data: a, shape: [a.length] });
    if (c.loss) {
      for (const v of ['a', 'b']) {
        const pair = augmentInBatches(aug, ds, images, o.lossImages).views;
        writeNpy(
          join(dir, `case${k}-views-${v}.npy`),
          nhwcToNchw(pair.dataSync() as Float32Array, pair.shape),
        );
        pair.dispose();
      }
    }
    return {
      ...c,
      config,
      outSize: config.crop.size ?? 28,
      channels: ds.channels,
      mean: ds.mean,
      std: ds.std,
    };
  });
  const manifest = { ...o, stats: VIEW_STATS, model: frozen.model, cases };
  writeFileAtomic(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);
}

/** One statistic's comparison as python/augment.py reports it. */
export interface StatTest {
  stat: string;
  contrast: { mean: number; std: number };
  torch: { mean: number; std: number };
  ks: number;
  p: number;
}

export interface CaseResult {
  name: string;
  transform: string;
  tests: StatTest[];
}

/** Runs the PyTorch side and reads its tests (two-sample KS; Welch's t for the loss). */
export function runAugmentParity(
  dir: string,
  o: AugmentOptions,
  frozen: { encoder: Encoder; model: unknown },
  log: (l: string) => void,
): {
  cases: CaseResult[];
  alpha: number;
} {
  log(`augmentation parity: ${AUGMENT_CASES.length} cases, ${o.views} views each`);
  writeContrastViews(dir, o, frozen);
  runPython('augment.py', [dir], log);
  return JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as {
    cases: CaseResult[];
    alpha: number;
  };
}
