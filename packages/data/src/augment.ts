import * as tf from '@tensorflow/tfjs';
import {
  ContractError,
  type AugmentationConfig,
  type Augmentation,
  type BatchPart,
  type CropGroupPlan,
  type Rng,
  type ViewGroup,
} from '@contrast/core';
import {
  blurBatch,
  colorJitterBatch,
  gaussianKernels,
  luminance,
  pilGaussianBlur,
  resizedCropBatch,
  rotateHue,
  saturate,
  solarizeBatch,
} from './transforms.js';

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

/** Per-sample draws of one augmented view; exposed for tests, parity checks and reproducibility. */
export interface ViewParams {
  /** [N*4] crops in pixels: top, left, height, width (RandomResizedCrop.get_params). */
  crops: Int32Array;
  /** [N] 1 = mirrored left-right. */
  flips: Uint8Array;
  /** Brightness and contrast factors (1 = unchanged). */
  brightness: Float32Array;
  contrast: Float32Array;
  /** Saturation factors (1 = unchanged), hue shifts (turns), grayscale flags, blur sigmas (0 = none). */
  saturation?: Float32Array;
  hue?: Float32Array;
  /** jitter.semantics 'torchvision': [N*4] the order of the adjustments (0 b, 1 c, 2 s, 3 h). */
  order?: Int32Array;
  grayscale?: Float32Array;
  sigma?: Float32Array;
  /** [N] 1 = solarized (pixels >= 0.5 become 1 - x). */
  solarize?: Float32Array;
}

const IDENTITY_ORDER = [0, 1, 2, 3];

/** Rows start .. start + n of a batch's draws (crops and orders hold 4 values a row). */
export function sliceParams(p: ViewParams, start: number, n: number): ViewParams {
  const rows = <A extends Int32Array | Uint8Array | Float32Array>(a: A, per = 1): A =>
    a.slice(start * per, (start + n) * per) as A;
  return {
    crops: rows(p.crops, 4),
    flips: rows(p.flips),
    brightness: rows(p.brightness),
    contrast: rows(p.contrast),
    ...(p.saturation ? { saturation: rows(p.saturation) } : {}),
    ...(p.hue ? { hue: rows(p.hue) } : {}),
    ...(p.order ? { order: rows(p.order, 4) } : {}),
    ...(p.grayscale ? { grayscale: rows(p.grayscale) } : {}),
    ...(p.sigma ? { sigma: rows(p.sigma) } : {}),
    ...(p.solarize ? { solarize: rows(p.solarize) } : {}),
  };
}

/**
 * MoCo's augmentation as batched tensor ops with torchvision's semantics (by
 * default; each transform keeps its earlier behaviour as an option, see the
 * schema): RandomResizedCrop (bilinear, antialiased) and RandomHorizontalFlip,
 * RandomApply(ColorJitter, p) with a random order per view, RandomGrayscale,
 * MoCo v2's PIL Gaussian blur, BYOL's solarization, then per-channel
 * normalisation. All draws come from the seeded Rng.
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
    // blur.kernel 'gaussian': about 10% of the side, odd (MoCo v2: 23 at 224), at least 3
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
    const crops = new Int32Array(n * 4);
    const flips = new Uint8Array(n);
    const brightness = new Float32Array(n).fill(1);
    const contrast = new Float32Array(n).fill(1);
    const rgb = this.channels === 3;
    const saturation = rgb && jitter.saturation > 0 ? new Float32Array(n).fill(1) : undefined;
    const hue = rgb && jitter.hue > 0 ? new Float32Array(n) : undefined;
    const order = jitter.semantics === 'torchvision' ? new Int32Array(n * 4) : undefined;
    const grayscale = rgb && this.config.grayscale > 0 ? new Float32Array(n) : undefined;
    const sigma = this.config.blur.p > 0 ? new Float32Array(n) : undefined;
    const solarize = this.config.solarize > 0 ? new Float32Array(n) : undefined;
    const factor = (s: number) => this.rng.uniform(Math.max(0, 1 - s), 1 + s);
    for (let i = 0; i < n; i++) {
      const b = sampleCropBox(this.rng, H, W, crop.scale, crop.ratio);
      crops.set([b.top, b.left, b.height, b.width], i * 4);
      if (this.rng.next() < flip) flips[i] = 1;
      order?.set(IDENTITY_ORDER, i * 4);
      if (this.rng.next() < jitter.p) {
        brightness[i] = factor(jitter.brightness);
        contrast[i] = factor(jitter.contrast);
        // draws only for what is switched on, so older configs keep their random stream
        if (saturation) saturation[i] = factor(jitter.saturation);
        if (hue) hue[i] = this.rng.uniform(-jitter.hue, jitter.hue);
        if (order) order.set(this.rng.permutation(4), i * 4);
      }
      if (grayscale && this.rng.next() < this.config.grayscale) grayscale[i] = 1;
      if (sigma && this.rng.next() < this.config.blur.p) {
        sigma[i] = this.rng.uniform(this.config.blur.sigma[0], this.config.blur.sigma[1]);
      }
      if (solarize && this.rng.next() < this.config.solarize) solarize[i] = 1;
    }
    return {
      crops,
      flips,
      brightness,
      contrast,
      ...(saturation ? { saturation } : {}),
      ...(hue ? { hue } : {}),
      ...(order ? { order } : {}),
      ...(grayscale ? { grayscale } : {}),
      ...(sigma ? { sigma } : {}),
      ...(solarize ? { solarize } : {}),
    };
  }

  /**
   * One view; the same pipeline for both views (MoCo, SimCLR).
   * x: [N, H, W, C] in [0, 1] -> [N, h, w, C], augmented and normalised.
   * With `part`, x is rows part.start .. part.start + N of a batch of
   * part.total: the whole batch's draws are made (the stream moves as on one
   * process) and x's rows of them applied.
   */
  view(x: tf.Tensor4D, _index?: number, part?: BatchPart): tf.Tensor4D {
    if (!part) return this.apply(x);
    return this.apply(x, sliceParams(this.drawParams(part.total), part.start, x.shape[0]));
  }

  apply(x: tf.Tensor4D, params: ViewParams = this.drawParams(x.shape[0])): tf.Tensor4D {
    return tf.tidy(() => normalize(this.augment(x, params), this.input.mean, this.input.std));
  }

  /** The augmented view in [0, 1], before normalisation. */
  augment(x: tf.Tensor4D, params: ViewParams): tf.Tensor4D {
    const n = x.shape[0];
    return tf.tidy(() => {
      let y = this.resizedCrop(x, params);
      if (params.order) {
        if (jittered(params)) y = colorJitterBatch(y, { ...params, order: params.order });
      } else {
        y = fixedOrderJitter(y, params);
      }
      if (params.grayscale) {
        const m = tf.tensor4d(params.grayscale, [n, 1, 1, 1]);
        y = tf.add(tf.mul(luminance(y), m), tf.mul(y, tf.sub(1, m))) as tf.Tensor4D;
      }
      if (params.sigma && params.sigma.some((v) => v > 0)) {
        y =
          this.config.blur.kernel === 'pil'
            ? pilGaussianBlur(y, params.sigma)
            : blurBatch(y, gaussianKernels(params.sigma, this.blurSize), this.blurSize);
      }
      if (params.solarize && params.solarize.some((v) => v > 0)) {
        y = solarizeBatch(y, params.solarize);
      }
      return y;
    });
  }

  private resizedCrop(x: tf.Tensor4D, { crops, flips }: ViewParams): tf.Tensor4D {
    const n = x.shape[0];
    if (this.config.crop.resize === 'torchvision') {
      const list = Array.from({ length: n }, (_, i) => ({
        top: crops[i * 4]!,
        left: crops[i * 4 + 1]!,
        height: crops[i * 4 + 2]!,
        width: crops[i * 4 + 3]!,
        flip: flips[i] === 1,
      }));
      return resizedCropBatch(x, list, this.outSize);
    }
    // corner pixel centres of the crop onto the output's corners; x1 > x2 flips
    const { height: H, width: W } = this.input;
    const boxes = new Float32Array(n * 4);
    for (let i = 0; i < n; i++) {
      const [top, left, h, w] = crops.subarray(i * 4, i * 4 + 4);
      const y1 = top! / Math.max(H - 1, 1);
      const y2 = (top! + h! - 1) / Math.max(H - 1, 1);
      let x1 = left! / Math.max(W - 1, 1);
      let x2 = (left! + w! - 1) / Math.max(W - 1, 1);
      if (flips[i] === 1) [x1, x2] = [x2, x1];
      boxes.set([y1, x1, y2, x2], i * 4);
    }
    return tf.tidy(() =>
      tf.image.cropAndResize(
        x,
        tf.tensor2d(boxes, [n, 4]),
        tf.range(0, n, 1, 'int32') as tf.Tensor1D,
        this.outSize,
        'bilinear',
      ),
    );
  }
}

/**
 * Multi-crop augmentation (SwAV, DINO): crop i of a batch is drawn with the
 * pipeline of its group (and its own perCrop overrides), every crop from one
 * random stream in crop order. With the default groups (one group of two crops
 * with data.augmentation) its draws are BatchAugmentation's two views', draw
 * for draw: the same pipeline called twice on the same stream.
 */
export class CropGroupsAugmentation implements Augmentation {
  readonly groups: readonly ViewGroup[];
  readonly outSize: readonly [number, number];
  /** One pipeline per crop, in crop order, all drawing from `rng`. */
  private readonly crops: BatchAugmentation[];

  constructor(
    plans: readonly CropGroupPlan[],
    input: ConstructorParameters<typeof BatchAugmentation>[1],
    private readonly rng: Rng,
  ) {
    this.crops = plans.flatMap((g) => g.crops.map((c) => new BatchAugmentation(c, input, rng)));
    let start = 0;
    this.groups = plans.map((g) => {
      const group = { name: g.name, start, count: g.count, size: this.crops[start]!.outSize };
      start += g.count;
      return group;
    });
    this.outSize = this.crops[0]!.outSize;
  }

  /** Crops per image, over all groups. */
  get cropCount(): number {
    return this.crops.length;
  }

  rngState(): number[] {
    return this.rng.getState();
  }

  setRngState(state: readonly number[]): void {
    this.rng.setState(state);
  }

  /**
   * Crop `index` of every image (see Augmentation.view): [N, H, W, C] in [0, 1]
   * -> [N, h, w, C] of its group's size, normalised.
   * @throws ContractError for an index outside 0 .. cropCount - 1.
   */
  view(x: tf.Tensor4D, index: number, part?: BatchPart): tf.Tensor4D {
    const crop = this.crops[index];
    if (!crop) {
      throw new ContractError(`crop ${index} of ${this.crops.length} requested`, {
        hint: `crops are numbered 0 .. ${this.crops.length - 1} in group order`,
      });
    }
    return crop.view(x, index, part);
  }
}

/** Whether any view of the batch has a non-neutral jitter factor. */
function jittered(p: ViewParams): boolean {
  const off = (a: Float32Array | undefined, neutral: number) => !a || a.every((v) => v === neutral);
  return !(off(p.brightness, 1) && off(p.contrast, 1) && off(p.saturation, 1) && off(p.hue, 0));
}

/**
 * jitter.semantics 'fixed-order' (the earlier behaviour): brightness, then
 * contrast around the mean over all channels, one clamp, then saturation and a
 * YIQ hue rotation.
 */
function fixedOrderJitter(x: tf.Tensor4D, params: ViewParams): tf.Tensor4D {
  return tf.tidy(() => {
    const n = x.shape[0];
    let y = tf.mul(x, tf.tensor4d(params.brightness, [n, 1, 1, 1])) as tf.Tensor4D;
    const grey = tf.mean(y, [1, 2, 3], true);
    const c = tf.tensor4d(params.contrast, [n, 1, 1, 1]);
    y = tf.clipByValue(tf.add(tf.mul(tf.sub(y, grey), c), grey), 0, 1) as tf.Tensor4D;
    if (params.saturation) y = saturate(y, tf.tensor1d(params.saturation));
    if (params.hue) y = rotateHue(y, tf.tensor1d(params.hue));
    return y;
  });
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
