import * as tf from '@tensorflow/tfjs';
import { ContractError } from '@contrast/core';

/**
 * Batched image transforms with per-image parameters, on [N, H, W, C] tensors in
 * [0, 1]: the pixel operations behind BatchAugmentation. Each follows a
 * documented torchvision / PIL semantic (named on the function) or is the
 * earlier Contrast behaviour kept as an option.
 */

/** Sampling taps of one axis of a resize: output i reads `index[i*taps + t]` with `weight[...]`. */
export interface ResizeTaps {
  taps: number;
  index: Int32Array;
  weight: Float32Array;
}

/**
 * Bilinear resize weights of one axis, as torchvision's resize with antialias=True
 * and PIL's BILINEAR: pixel j covers [j, j+1]; output i is centred at
 * start + (i + 0.5) * scale with scale = length / out; input pixels within
 * `support` = max(scale, 1) of the centre get the triangle weight
 * 1 - |j + 0.5 - centre| / support, normalised to sum 1, and pixels outside the
 * crop are never read (so edge pixels are held when upsampling). When upsampling
 * this is the ordinary half-pixel bilinear interpolation (align_corners=False).
 * `flip` mirrors the output. Returns out x taps indices into the full axis.
 */
export function resizeTaps(start: number, length: number, out: number, flip = false): ResizeTaps {
  const scale = length / out;
  const support = Math.max(scale, 1);
  const taps = Math.ceil(support) * 2 + 1;
  const index = new Int32Array(out * taps);
  const weight = new Float32Array(out * taps);
  for (let i = 0; i < out; i++) {
    const centre = (i + 0.5) * scale; // crop-relative
    const lo = Math.max(0, Math.floor(centre - support));
    const row = (flip ? out - 1 - i : i) * taps;
    let sum = 0;
    for (let t = 0; t < taps; t++) {
      const j = Math.min(lo + t, length - 1);
      const w = lo + t < length ? Math.max(0, 1 - Math.abs(j + 0.5 - centre) / support) : 0;
      index[row + t] = start + j;
      weight[row + t] = w;
      sum += w;
    }
    for (let t = 0; t < taps; t++) weight[row + t]! /= sum;
  }
  return { taps, index, weight };
}

/**
 * Each image's taps as a dense resize matrix: [N, out, length], row i holding
 * output i's weights over the whole axis (taps that read the same pixel add).
 */
function resizeMatrices(taps: readonly ResizeTaps[], out: number, length: number): tf.Tensor3D {
  const m = new Float32Array(taps.length * out * length);
  taps.forEach((a, n) => {
    for (let i = 0; i < out; i++) {
      const row = (n * out + i) * length;
      for (let t = 0; t < a.taps; t++)
        m[row + a.index[i * a.taps + t]!]! += a.weight[i * a.taps + t]!;
    }
  });
  return tf.tensor3d(m, [taps.length, out, length]);
}

/** A crop in pixels (top-left row/column and size) and whether to mirror it left-right. */
export interface PixelCrop {
  top: number;
  left: number;
  height: number;
  width: number;
  flip: boolean;
}

/**
 * torchvision's F.resized_crop(img, top, left, height, width, size, BILINEAR,
 * antialias=True) per image, then an optional horizontal flip:
 * [N, H, W, C] -> [N, outH, outW, C]. Separable: each image's rows, then its
 * columns, as two batched matrix products with its resize matrices
 * ([N, outH, H] and [N, outW, W], from resizeTaps): N (outH H W + outW W outH) C
 * multiply-adds, cheap at the sizes SSL pre-trains at (28 to 96 pixels).
 * @throws ContractError when a crop is empty or reaches outside the image, or
 * when there is not one crop per image.
 */
export function resizedCropBatch(
  x: tf.Tensor4D,
  crops: readonly PixelCrop[],
  out: readonly [number, number],
): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const bad = crops.findIndex(
    (k) =>
      k.height < 1 ||
      k.width < 1 ||
      k.top < 0 ||
      k.left < 0 ||
      k.top + k.height > h ||
      k.left + k.width > w,
  );
  if (crops.length !== n || bad >= 0) {
    throw new ContractError(
      crops.length !== n
        ? `resizedCropBatch: ${crops.length} crops for ${n} images`
        : `resizedCropBatch: crop ${bad} (${JSON.stringify(crops[bad])}) is not inside the ${h}x${w} image`,
      {
        hint: 'give one crop per image with 0 <= top, top + height <= H, 0 <= left, left + width <= W',
      },
    );
  }
  return tf.tidy(() => {
    const [oh, ow] = out;
    const rows = resizeMatrices(
      crops.map((k) => resizeTaps(k.top, k.height, oh)),
      oh,
      h,
    );
    const cols = resizeMatrices(
      crops.map((k) => resizeTaps(k.left, k.width, ow, k.flip)),
      ow,
      w,
    );
    const y = tf.reshape(tf.matMul(rows, tf.reshape(x, [n, h, w * c])), [n, oh, w, c]);
    const yt = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [n, w, oh * c]);
    return tf.transpose(tf.reshape(tf.matMul(cols, yt), [n, ow, oh, c]), [0, 2, 1, 3]);
  });
}

/**
 * ITU-R 601 luma (PIL's convert('L') weights; torchvision's rgb_to_grayscale):
 * [N, H, W, 3] -> [N, H, W, 1], as a 1x1 convolution (one pass over the batch).
 */
export function luminance(x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.conv2d(x, tf.tensor4d([0.299, 0.587, 0.114], [1, 1, 3, 1]), 1, 'valid'));
}

/** The view's grayscale: the luma for RGB, the image itself for one channel. */
function gray(x: tf.Tensor4D): tf.Tensor4D {
  return x.shape[3] === 3 ? luminance(x) : x;
}

const perImage = (f: tf.Tensor1D) => tf.reshape(f, [-1, 1, 1, 1]);

/** f x + (1 - f) y, clamped to [0, 1]: torchvision's _blend. */
function blend(x: tf.Tensor4D, y: tf.Tensor, f: tf.Tensor1D): tf.Tensor4D {
  const k = perImage(f);
  return tf.clipByValue(tf.add(tf.mul(x, k), tf.mul(y, tf.sub(1, k))), 0, 1) as tf.Tensor4D;
}

/** torchvision's adjust_brightness: x f, clamped. f [N]. */
export function adjustBrightness(x: tf.Tensor4D, f: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => tf.clipByValue(tf.mul(x, perImage(f)), 0, 1) as tf.Tensor4D);
}

/** torchvision's adjust_contrast: blend with the mean of the image's grayscale, clamped. f [N]. */
export function adjustContrast(x: tf.Tensor4D, f: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => blend(x, tf.mean(gray(x), [1, 2, 3], true), f));
}

/** torchvision's adjust_saturation: blend with the grayscale image, clamped; RGB only. f [N]. */
export function saturate(x: tf.Tensor4D, f: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => (x.shape[3] === 3 ? blend(x, luminance(x), f) : x.clone()));
}

/**
 * torchvision's adjust_hue: RGB -> HSV, h <- (h + shift) mod 1, HSV -> RGB
 * (torchvision.transforms._functional_tensor _rgb2hsv / _hsv2rgb), in closed form:
 * with v the largest channel, chroma = v - the smallest, and h6 = 6 h the hue in
 * sixths of a turn (the sector of the largest channel, red before green before
 * blue), output channel n of (5, 3, 1) is v - chroma clamp(min(k, 4 - k), 0, 1),
 * k = (n + h6 + 6 shift) mod 6 — the hexcone's p, q, t table (v s = chroma).
 * x [N, H, W, 3] in [0, 1], shift [N] in turns, [-0.5, 0.5]; one channel is
 * returned as is. Returns [N, H, W, C]. Grey pixels (zero chroma) stay grey.
 */
export function adjustHue(x: tf.Tensor4D, shift: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => {
    if (x.shape[3] !== 3) return x.clone();
    const [r, g, b] = tf.split(x, 3, 3) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    const v = tf.maximum(tf.maximum(r, g), b);
    const chroma = tf.sub(v, tf.minimum(tf.minimum(r, g), b));
    // a grey pixel divides 0 by 1e-30: hue 0, weighed by its zero chroma below
    const c = tf.maximum(chroma, 1e-30);
    const h6 = tf.where(
      tf.equal(v, r),
      tf.div(tf.sub(g, b), c),
      tf.where(
        tf.equal(v, g),
        tf.add(tf.div(tf.sub(b, r), c), 2),
        tf.add(tf.div(tf.sub(r, g), c), 4),
      ),
    );
    const turn = tf.reshape(tf.mul(shift, 6), [-1, 1, 1, 1]);
    const channel = (n: number) => {
      const k = tf.mod(tf.add(h6, tf.add(turn, n)), 6);
      return tf.sub(v, tf.mul(chroma, tf.clipByValue(tf.minimum(k, tf.sub(4, k)), 0, 1)));
    };
    return tf.concat([channel(5), channel(3), channel(1)], 3) as tf.Tensor4D;
  });
}

/**
 * Hue rotation by h turns [N] in YIQ space: luma kept, chroma rotated. The
 * earlier stand-in for torchvision's HSV hue shift (jitter.semantics 'fixed-order').
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

/** Per-image ColorJitter draws: factors (1 = unchanged), hue shifts (0 = none) and the order. */
export interface JitterParams {
  brightness: Float32Array;
  contrast: Float32Array;
  saturation?: Float32Array;
  hue?: Float32Array;
  /** [N*4]: for each image, the adjustments in the order applied (0 b, 1 c, 2 s, 3 h). */
  order: Int32Array;
}

/** The four ColorJitter adjustments in torchvision's numbering (0 b, 1 c, 2 s, 3 h) and their neutral values. */
const JITTER_OPS: readonly ((x: tf.Tensor4D, f: tf.Tensor1D) => tf.Tensor4D)[] = [
  adjustBrightness,
  adjustContrast,
  saturate,
  adjustHue,
];
const JITTER_NEUTRAL = [1, 1, 1, 0] as const;

/**
 * torchvision's ColorJitter on a batch [N, H, W, C] in [0, 1]: for each image its
 * own factors and its own order of the four adjustments, each adjustment
 * clamping to [0, 1] (torchvision.transforms.ColorJitter.forward). Saturation
 * and hue act on RGB only. An image whose factors are all neutral comes out
 * bit-identical (RandomApply skipped it). Each adjustment runs once per image:
 * for each position in the order, the images whose adjustment there is the same
 * are gathered and adjusted together, and the batch is put back in its order at
 * the end. Returns [N, H, W, C].
 */
export function colorJitterBatch(x: tf.Tensor4D, p: JitterParams): tf.Tensor4D {
  return tf.tidy(() => {
    const n = x.shape[0];
    const rgb = x.shape[3] === 3;
    const factors = [
      p.brightness,
      p.contrast,
      rgb ? p.saturation : undefined,
      rgb ? p.hue : undefined,
    ];
    const jittered = (i: number) =>
      factors.some((f, op) => f !== undefined && f[i] !== JITTER_NEUTRAL[op]);
    // rows: the original index of each row of `y`; the untouched images are set aside
    const all = Array.from({ length: n }, (_, i) => i);
    let rows = all.filter(jittered);
    if (rows.length === 0) return x.clone();
    const rest = all.filter((i) => !jittered(i));
    let y = rows.length === n ? x : (tf.gather(x, rows) as tf.Tensor4D);
    // each image's adjustments in its order, leaving out those that do not apply (s, h on gray)
    const orders = new Map(
      rows.map((image) => [
        image,
        Array.from(p.order.subarray(image * 4, image * 4 + 4)).filter((op) => factors[op]),
      ]),
    );
    const slots = factors.filter((f) => f !== undefined).length;
    for (let slot = 0; slot < slots; slot++) {
      const groups: number[][] = [[], [], [], []];
      rows.forEach((image, k) => groups[orders.get(image)![slot]!]!.push(k));
      const parts: tf.Tensor4D[] = [];
      const next: number[] = [];
      groups.forEach((g, op) => {
        if (g.length === 0) return;
        const f = factors[op]!;
        const part = g.length === rows.length ? y : (tf.gather(y, g) as tf.Tensor4D);
        parts.push(JITTER_OPS[op]!(part, tf.tensor1d(g.map((k) => f[rows[k]!]!))));
        next.push(...g.map((k) => rows[k]!));
      });
      y = parts.length === 1 ? parts[0]! : (tf.concat(parts) as tf.Tensor4D);
      rows = next;
    }
    if (rest.length) {
      y = tf.concat([y, tf.gather(x, rest)]) as tf.Tensor4D;
      rows = [...rows, ...rest];
    }
    const inverse = new Int32Array(n);
    rows.forEach((image, k) => (inverse[image] = k));
    return rows.every((image, k) => image === k) ? y : (tf.gather(y, inverse) as tf.Tensor4D);
  });
}

/**
 * PIL's GaussianBlur(radius = sigma) as an extended box filter (Gwosdek et al.
 * 2011, as PIL implements it): with `passes` boxes of variance sigma^2 / passes
 * each, the box radius is l + a, l its integer part and a the weight of the two
 * taps just outside. Returns l and a.
 */
export function pilBoxRadius(sigma: number, passes = 3): { l: number; a: number } {
  const sigma2 = (sigma * sigma) / passes;
  const L = Math.sqrt(12 * sigma2 + 1);
  const l = Math.floor((L - 1) / 2);
  const a = ((2 * l + 1) * (l * (l + 1) - 3 * sigma2)) / (6 * (sigma2 - (l + 1) * (l + 1)));
  return { l, a };
}

/**
 * One extended box kernel per sigma, [N, 2R+3] with R = max l: taps
 * 1 / (2(l + a) + 1) within l of the centre and a / (2(l + a) + 1) at l + 1
 * (sigma 0: the identity).
 */
export function pilBoxKernels(
  sigmas: Float32Array,
  passes = 3,
): { kernels: Float32Array; size: number } {
  const radii = Array.from(sigmas, (s) => (s > 0 ? pilBoxRadius(s, passes) : { l: -1, a: 0 }));
  const half = Math.max(0, ...radii.map((r) => r.l)) + 1;
  const size = 2 * half + 1;
  const kernels = new Float32Array(sigmas.length * size);
  radii.forEach(({ l, a }, i) => {
    if (l < 0) {
      kernels[i * size + half] = 1;
      return;
    }
    const norm = 2 * (l + a) + 1;
    for (let k = -l - 1; k <= l + 1; k++) {
      kernels[i * size + half + k] = (Math.abs(k) <= l ? 1 : a) / norm;
    }
  });
  return { kernels, size };
}

/**
 * A separable per-image filter along axis 1 or 2 with kernels [N, size]; `edge`
 * padding repeats the border pixel (PIL), `reflect` mirrors without it.
 */
export function filterAxis(
  x: tf.Tensor4D,
  kernels: Float32Array,
  size: number,
  axis: 1 | 2,
  padding: 'edge' | 'reflect',
): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const r = (size - 1) / 2;
    const len = axis === 1 ? h : w;
    let p: tf.Tensor4D;
    if (padding === 'edge') {
      const idx = Int32Array.from({ length: len + 2 * r }, (_, i) =>
        Math.min(len - 1, Math.max(0, i - r)),
      );
      p = tf.gather(x, tf.tensor1d(idx, 'int32'), axis);
    } else {
      const pad: [number, number][] = [
        [0, 0],
        [0, 0],
        [0, 0],
        [0, 0],
      ];
      pad[axis] = [r, r];
      p = tf.mirrorPad(x, pad, 'reflect');
    }
    const k = tf.tensor2d(kernels, [n, size]);
    let acc: tf.Tensor4D | undefined;
    for (let j = 0; j < size; j++) {
      const begin = [0, 0, 0, 0];
      begin[axis] = j;
      const term = tf.mul(
        tf.slice(p, begin, [n, h, w, c]),
        tf.reshape(tf.slice(k, [0, j], [n, 1]), [n, 1, 1, 1]),
      ) as tf.Tensor4D;
      acc = acc ? (tf.add(acc, term) as tf.Tensor4D) : term;
    }
    return acc!;
  });
}

/**
 * MoCo v2's blur: PIL's ImageFilter.GaussianBlur(radius = sigma) per image
 * (sigma 0 = none): three extended box passes along the rows, then three along
 * the columns, edge pixels repeated, in float (PIL rounds to 8 bits after each pass).
 */
export function pilGaussianBlur(x: tf.Tensor4D, sigmas: Float32Array): tf.Tensor4D {
  const { kernels, size } = pilBoxKernels(sigmas);
  return tf.tidy(() => {
    let y = x;
    for (const axis of [2, 1] as const) {
      for (let pass = 0; pass < 3; pass++) y = filterAxis(y, kernels, size, axis, 'edge');
    }
    return y;
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

/** Separable Gaussian blur with a per-image kernel [N, size], reflect padding (blur.kernel 'gaussian'). */
export function blurBatch(x: tf.Tensor4D, kernels: Float32Array, size: number): tf.Tensor4D {
  return tf.tidy(() =>
    filterAxis(filterAxis(x, kernels, size, 1, 'reflect'), kernels, size, 2, 'reflect'),
  );
}

/**
 * torchvision's F.solarize(img, threshold) on [0, 1] floats, for the images
 * whose flag is 1: every pixel >= threshold becomes 1 - x (BYOL's
 * Solarization; threshold 0.5 is PIL's ImageOps.solarize at 128 on 8-bit images).
 * x: [N, H, W, C], flags: [N] 0 or 1.
 */
export function solarizeBatch(x: tf.Tensor4D, flags: Float32Array, threshold = 0.5): tf.Tensor4D {
  return tf.tidy(() => {
    const inverted = tf.where(tf.greaterEqual(x, threshold), tf.sub(1, x), x);
    const m = tf.tensor4d(flags, [flags.length, 1, 1, 1]);
    return tf.add(tf.mul(inverted, m), tf.mul(x, tf.sub(1, m))) as tf.Tensor4D;
  });
}
