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
      mean: readonly number[];
      std: readonly number[];
    },
    private readonly rng: Rng,
  ) {
    const s = config.crop.size;
    this.outSize = s ? [s, s] : [input.height, input.width];
  }

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
      }
    }
    return { boxes, brightness, contrast };
  }

  /** x: [N, H, W, C] in [0, 1] -> [N, h, w, C], augmented and normalised. */
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
