import * as tf from '@tensorflow/tfjs';
import type { AugmentationConfig, Augmentation, Rng } from '@contrast/core';

export interface CropBox {
  /** Top-left row/column and size in pixels. */
  top: number;
  left: number;
  height: number;
  width: number;
}

/**
 * torchvision's RandomResizedCrop.get_params: up to 10 tries at a random area
 * fraction in `scale` and a log-uniform aspect ratio in `ratio`; then a centre
 * crop with the ratio clamped to the allowed range.
 */
export function sampleCropBox(
  rng: Rng,
  height: number,
  width: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
): CropBox {
  const area = height * width;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < ratio[0]) {
    w = width;
    h = Math.round(w / ratio[0]);
  } else if (inRatio > ratio[1]) {
    h = height;
    w = Math.round(h * ratio[1]);
  } else {
    w = width;
    h = height;
  }
  return {
    top: Math.floor((height - h) / 2),
    left: Math.floor((width - w) / 2),
    height: h,
    width: w,
  };
}

/** Per-sample draws of one augmented view; exposed for tests and reproducibility checks. */
export interface ViewParams {
  /** [N*4] normalised (y1, x1, y2, x2) boxes for cropAndResize; x1 > x2 means flipped. */
  boxes: Float32Array;
  brightness: Float32Array;
  contrast: Float32Array;
  /** Saturation factors (1 = unchanged), hue shifts (turns), grayscale flags, blur sigmas (0 = none). */
  saturation?: Float32Array;
  hue?: Float32Array;
  grayscale?: Float32Array;
  sigma?: Float32Array;
}

/** ITU-R 601 luma, as torchvision's rgb_to_grayscale. */
export function luminance(x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(
    () => tf.sum(tf.mul(x, tf.tensor1d([0.299, 0.587, 0.114])), 3, true) as tf.Tensor4D,
  );
}

/** Blends each image with its grayscale version by factor f [N]: 0 = gray, 1 = unchanged. */
export function saturate(x: tf.Tensor4D, f: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => {
    const g = luminance(x);
    const k = tf.reshape(f, [-1, 1, 1, 1]);
    return tf.clipByValue(tf.add(g, tf.mul(tf.sub(x, g), k)), 0, 1) as tf.Tensor4D;
  });
}

/**
 * Hue rotation by h turns [N] in YIQ space: luma kept, chroma rotated. A close,
 * differentiable stand-in for torchvision's HSV hue shift.
 */
export function rotateHue(x: tf.Tensor4D, h: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => {
    const toYiq = tf.tensor2d([
      [0.299, 0.596, 0.211],
      [0.587, -0.274, -0.523],
      [0.114, -0.322, 0.312],
    ]);
    const fromYiq = tf.tensor2d([
      [1, 1, 1],
      [0.956, -0.272, -1.106],
      [0.621, -0.647, 1.703],
    ]);
    const [n, hh, w] = x.shape;
    const yiq = tf.reshape(tf.matMul(tf.reshape(x, [-1, 3]), toYiq), [n, hh * w, 3]);
    const angle = tf.mul(h, 2 * Math.PI);
    const cos = tf.reshape(tf.cos(angle), [n, 1, 1]);
    const sin = tf.reshape(tf.sin(angle), [n, 1, 1]);
    const [yc, i, q] = tf.split(yiq, 3, 2);
    const i2 = tf.sub(tf.mul(i!, cos), tf.mul(q!, sin));
    const q2 = tf.add(tf.mul(i!, sin), tf.mul(q!, cos));
    const back = tf.matMul(tf.reshape(tf.concat([yc!, i2, q2], 2), [-1, 3]), fromYiq);
    return tf.clipByValue(tf.reshape(back, [n, hh, w, 3]), 0, 1) as tf.Tensor4D;
  });
}

/** Gaussian weights of an odd kernel of `size` for each sigma (sigma 0: the identity). */
export function gaussianKernels(sigmas: Float32Array, size: number): Float32Array {
  const r = (size - 1) / 2;
  const out = new Float32Array(sigmas.length * size);
  for (let i = 0; i < sigmas.length; i++) {
    const s = sigmas[i]!;
    if (s <= 0) {
      out[i * size + r] = 1;
      continue;
    }
    let sum = 0;
    for (let j = 0; j < size; j++) {
      const v = Math.exp(-((j - r) ** 2) / (2 * s * s));
      out[i * size + j] = v;
      sum += v;
    }
    for (let j = 0; j < size; j++) out[i * size + j]! /= sum;
  }
  return out;
}

/** Separable Gaussian blur with a per-image kernel [N, size], reflect padding. */
export function blurBatch(x: tf.Tensor4D, kernels: Float32Array, size: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, w] = x.shape;
    const r = (size - 1) / 2;
    const k = tf.tensor2d(kernels, [n, size]);
    const pass = (img: tf.Tensor4D, axis: 1 | 2): tf.Tensor4D => {
      const pad: [number, number][] = [
        [0, 0],
        [0, 0],
        [0, 0],
        [0, 0],
      ];
      pad[axis] = [r, r];
      const p = tf.mirrorPad(img, pad, 'reflect');
      let acc: tf.Tensor4D | undefined;
      for (let j = 0; j < size; j++) {
        const begin = [0, 0, 0, 0];
        begin[axis] = j;
        const shape = [n, h, w, img.shape[3]];
        const term = tf.mul(
          tf.slice(p, begin, shape),
          tf.reshape(tf.slice(k, [0, j], [n, 1]), [n, 1, 1, 1]),
        ) as tf.Tensor4D;
        acc = acc ? (tf.add(acc, term) as tf.Tensor4D) : term;
      }
      return acc!;
    };
    return pass(pass(x, 1), 2);
  });
}

/**
 * MoCo-style augmentation as batched tensor ops: random resized crop
 * (tf.image.cropAndResize, with the horizontal flip folded into the box by
 * swapping x1 and x2), brightness and contrast jitter applied with probability p,
 * then per-channel normalisation. All draws come from the seeded Rng.
 */
export class BatchAugmentation implements Augmentation {
  readonly outSize: [number, number];

  constructor(
    private readonly config: AugmentationConfig,
    private readonly input: {
      height: number;
      width: number;
      channels?: number;
      mean: readonly number[];
      std: readonly number[];
    },
    private readonly rng: Rng,
  ) {
    const s = config.crop.size;
    this.outSize = s ? [s, s] : [input.height, input.width];
    this.channels = input.channels ?? input.mean.length;
    // about 10% of the side, odd (MoCo v2: 23 at 224), at least 3
    this.blurSize = Math.max(3, 2 * Math.floor((0.1 * Math.min(...this.outSize)) / 2) + 1);
  }

  private readonly channels: number;
  private readonly blurSize: number;

  /** The position of its random stream (checkpoints save it for an exact resume). */
  rngState(): number[] {
    return this.rng.getState();
  }

  setRngState(state: readonly number[]): void {
    this.rng.setState(state);
  }

  drawParams(n: number): ViewParams {
    const { height: H, width: W } = this.input;
    const { crop, flip, jitter } = this.config;
    const boxes = new Float32Array(n * 4);
    const brightness = new Float32Array(n).fill(1);
    const contrast = new Float32Array(n).fill(1);
    const rgb = this.channels === 3;
    const saturation = rgb && jitter.saturation > 0 ? new Float32Array(n).fill(1) : undefined;
    const hue = rgb && jitter.hue > 0 ? new Float32Array(n) : undefined;
    const grayscale = rgb && this.config.grayscale > 0 ? new Float32Array(n) : undefined;
    const sigma = this.config.blur.p > 0 ? new Float32Array(n) : undefined;
    for (let i = 0; i < n; i++) {
      const b = sampleCropBox(this.rng, H, W, crop.scale, crop.ratio);
      // Pixel-centre coordinates: 0 is the first pixel centre, 1 the last.
      const y1 = b.top / Math.max(H - 1, 1);
      const y2 = (b.top + b.height - 1) / Math.max(H - 1, 1);
      let x1 = b.left / Math.max(W - 1, 1);
      let x2 = (b.left + b.width - 1) / Math.max(W - 1, 1);
      if (this.rng.next() < flip) [x1, x2] = [x2, x1];
      boxes.set([y1, x1, y2, x2], i * 4);
      if (this.rng.next() < jitter.p) {
        brightness[i] = this.rng.uniform(Math.max(0, 1 - jitter.brightness), 1 + jitter.brightness);
        contrast[i] = this.rng.uniform(Math.max(0, 1 - jitter.contrast), 1 + jitter.contrast);
        // draws only for what is switched on, so older configs keep their random stream
        if (saturation) {
          saturation[i] = this.rng.uniform(
            Math.max(0, 1 - jitter.saturation),
            1 + jitter.saturation,
          );
        }
        if (hue) hue[i] = this.rng.uniform(-jitter.hue, jitter.hue);
      }
      if (grayscale && this.rng.next() < this.config.grayscale) grayscale[i] = 1;
      if (sigma && this.rng.next() < this.config.blur.p) {
        sigma[i] = this.rng.uniform(this.config.blur.sigma[0], this.config.blur.sigma[1]);
      }
    }
    return {
      boxes,
      brightness,
      contrast,
      ...(saturation ? { saturation } : {}),
      ...(hue ? { hue } : {}),
      ...(grayscale ? { grayscale } : {}),
      ...(sigma ? { sigma } : {}),
    };
  }

  /** x: [N, H, W, C] in [0, 1] -> [N, h, w, C], augmented and normalised. */
  /** One view; the same pipeline for both views (MoCo, SimCLR). */
  view(x: tf.Tensor4D): tf.Tensor4D {
    return this.apply(x);
  }

  apply(x: tf.Tensor4D, params: ViewParams = this.drawParams(x.shape[0])): tf.Tensor4D {
    const n = x.shape[0];
    return tf.tidy(() => {
      const boxInd = tf.range(0, n, 1, 'int32') as tf.Tensor1D;
      let y = tf.image.cropAndResize(
        x,
        tf.tensor2d(params.boxes, [n, 4]),
        boxInd,
        this.outSize,
        'bilinear',
      );
      const b = tf.tensor4d(params.brightness, [n, 1, 1, 1]);
      const c = tf.tensor4d(params.contrast, [n, 1, 1, 1]);
      y = tf.mul(y, b);
      // Contrast blends with the image's mean grey level, as torchvision does.
      const grey = tf.mean(y, [1, 2, 3], true);
      y = tf.clipByValue(tf.add(tf.mul(tf.sub(y, grey), c), grey), 0, 1) as tf.Tensor4D;
      if (params.saturation) y = saturate(y, tf.tensor1d(params.saturation));
      if (params.hue) y = rotateHue(y, tf.tensor1d(params.hue));
      if (params.grayscale) {
        const m = tf.tensor4d(params.grayscale, [n, 1, 1, 1]);
        y = tf.add(tf.mul(luminance(y), m), tf.mul(y, tf.sub(1, m))) as tf.Tensor4D;
      }
      if (params.sigma && params.sigma.some((v) => v > 0)) {
        y = blurBatch(y, gaussianKernels(params.sigma, this.blurSize), this.blurSize);
      }
      return normalize(y, this.input.mean, this.input.std);
    });
  }
}

/** (x - mean) / std per channel. */
export function normalize(
  x: tf.Tensor4D,
  mean: readonly number[],
  std: readonly number[],
): tf.Tensor4D {
  return tf.tidy(
    () => tf.div(tf.sub(x, tf.tensor1d([...mean])), tf.tensor1d([...std])) as tf.Tensor4D,
  );
}
