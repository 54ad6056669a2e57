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

/** One axis (1 = rows, 2 = columns) of a per-image resize: [N, H, W, C] -> [N, out, W, C] or [N, H, out, C]. */
function resizeAxis(x: tf.Tensor4D, axis: 1 | 2, taps: ResizeTaps[], out: number): tf.Tensor4D {
  return tf.tidy(() => {
    const n = x.shape[0];
    const t = taps[0]!.taps;
    const index = new Int32Array(n * out * t);
    const weight = new Float32Array(n * out * t);
    taps.forEach((a, i) => {
      if (a.taps !== t) {
        throw new ContractError('resizeAxis: every image needs the same number of taps', {
          hint: 'compute the taps of one batch with one source and output size',
        });
      }
      index.set(a.index, i * out * t);
      weight.set(a.weight, i * out * t);
    });
    const idx = tf.tensor3d(index, [n, out, t], 'int32');
    const w = tf.tensor3d(weight, [n, out, t]);
    const shape = axis === 1 ? [n, out, 1, 1] : [n, 1, out, 1];
    let acc: tf.Tensor | undefined;
    for (let k = 0; k < t; k++) {
      const ik = tf.reshape(tf.slice(idx, [0, 0, k], [n, out, 1]), [n, out]);
      const wk = tf.reshape(tf.slice(w, [0, 0, k], [n, out, 1]), shape);
      const term = tf.mul(tf.gather(x, ik, axis, 1), wk);
      acc = acc ? tf.add(acc, term) : term;
    }
    return acc as tf.Tensor4D;
  });
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
 * [N, H, W, C] -> [N, outH, outW, C]. Separable: rows, then columns.
 */
export function resizedCropBatch(
  x: tf.Tensor4D,
  crops: readonly PixelCrop[],
  out: readonly [number, number],
): tf.Tensor4D {
  return tf.tidy(() => {
    const taps = (f: (c: PixelCrop) => ResizeTaps) => {
      const all = crops.map(f);
      const t = Math.max(...all.map((a) => a.taps));
      return all.map((a) => padTaps(a, t));
    };
    const rows = taps((c) => resizeTaps(c.top, c.height, out[0]));
    const cols = taps((c) => resizeTaps(c.left, c.width, out[1], c.flip));
    return resizeAxis(resizeAxis(x, 1, rows, out[0]), 2, cols, out[1]);
  });
}

/** Widens an image's taps to `t` with zero-weight taps (so a batch shares one shape). */
function padTaps(a: ResizeTaps, t: number): ResizeTaps {
  if (a.taps === t) return a;
  const out = a.index.length / a.taps;
  const index = new Int32Array(out * t);
  const weight = new Float32Array(out * t);
  for (let i = 0; i < out; i++) {
    for (let k = 0; k < t; k++) {
      index[i * t + k] = a.index[i * a.taps + Math.min(k, a.taps - 1)]!;
      weight[i * t + k] = k < a.taps ? a.weight[i * a.taps + k]! : 0;
    }
  }
  return { taps: t, index, weight };
}

/** ITU-R 601 luma (PIL's convert('L') weights; torchvision's rgb_to_grayscale): [N, H, W, 3] -> [N, H, W, 1]. */
export function luminance(x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(
    () => tf.sum(tf.mul(x, tf.tensor1d([0.299, 0.587, 0.114])), 3, true) as tf.Tensor4D,
  );
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
 * torchvision's adjust_hue: RGB -> HSV, h <- (h + shift) mod 1, HSV -> RGB.
 * shift [N] in turns, [-0.5, 0.5]; RGB only (one channel is returned as is).
 */
export function adjustHue(x: tf.Tensor4D, shift: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => {
    if (x.shape[3] !== 3) return x.clone();
    const [r, g, b] = tf.split(x, 3, 3) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    const v = tf.maximum(tf.maximum(r, g), b);
    const chroma = tf.sub(v, tf.minimum(tf.minimum(r, g), b));
    const grey = tf.equal(chroma, 0);
    const s = tf.where(grey, tf.zerosLike(v), tf.div(chroma, tf.where(grey, tf.onesLike(v), v)));
    const c = tf.where(grey, tf.onesLike(chroma), chroma);
    const [rc, gc, bc] = [r, g, b].map((ch) => tf.div(tf.sub(v, ch), c));
    // hue sector by which channel is the maximum (red first, then green)
    const isR = tf.equal(v, r);
    const isG = tf.logicalAnd(tf.equal(v, g), tf.logicalNot(isR));
    const h6 = tf.where(
      isR,
      tf.sub(bc!, gc!),
      tf.where(isG, tf.add(2, tf.sub(rc!, bc!)), tf.add(4, tf.sub(gc!, rc!))),
    );
    const h = tf.mod(tf.add(tf.add(tf.div(h6, 6), 1), perImage(shift)), 1);
    return hsvToRgb(h, s, v);
  });
}

/** HSV -> RGB, each [N, H, W, 1] in [0, 1] -> [N, H, W, 3] (the six sectors of the hexcone). */
function hsvToRgb(h: tf.Tensor, s: tf.Tensor, v: tf.Tensor): tf.Tensor4D {
  const h6 = tf.mul(h, 6);
  const sector = tf.mod(tf.floor(h6), 6);
  const f = tf.sub(h6, tf.floor(h6));
  const p = tf.clipByValue(tf.mul(v, tf.sub(1, s)), 0, 1);
  const q = tf.clipByValue(tf.mul(v, tf.sub(1, tf.mul(s, f))), 0, 1);
  const t = tf.clipByValue(tf.mul(v, tf.sub(1, tf.mul(s, tf.sub(1, f)))), 0, 1);
  // (r, g, b) per sector 0..5: (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q)
  const table = [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ];
  const channel = (c: number) => {
    let out = table[5]![c]!;
    for (let k = 4; k >= 0; k--) out = tf.where(tf.equal(sector, k), table[k]![c]!, out);
    return out;
  };
  return tf.concat([channel(0), channel(1), channel(2)], 3) as tf.Tensor4D;
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

/**
 * torchvision's ColorJitter on a batch: for each image its own factors and its
 * own order of the four adjustments, each adjustment clamping to [0, 1]. An
 * image whose factors are all neutral comes out unchanged (RandomApply skipped it).
 */
export function colorJitterBatch(x: tf.Tensor4D, p: JitterParams): tf.Tensor4D {
  return tf.tidy(() => {
    const n = x.shape[0];
    const ops: ((y: tf.Tensor4D) => tf.Tensor4D)[] = [
      (y) => adjustBrightness(y, tf.tensor1d(p.brightness)),
      (y) => adjustContrast(y, tf.tensor1d(p.contrast)),
      (y) => (p.saturation ? saturate(y, tf.tensor1d(p.saturation)) : y),
      (y) => (p.hue ? adjustHue(y, tf.tensor1d(p.hue)) : y),
    ];
    const active = [true, true, !!p.saturation && x.shape[3] === 3, !!p.hue && x.shape[3] === 3];
    let y = x;
    for (let slot = 0; slot < 4; slot++) {
      const which = Int32Array.from({ length: n }, (_, i) => p.order[i * 4 + slot]!);
      let next: tf.Tensor4D | undefined;
      for (let op = 0; op < 4; op++) {
        if (!active[op] || !which.includes(op)) continue;
        const mask = tf.tensor4d(
          Float32Array.from(which, (w) => (w === op ? 1 : 0)),
          [n, 1, 1, 1],
        );
        const term = tf.mul(tf.sub(ops[op]!(y), y), mask) as tf.Tensor4D;
        next = next ? (tf.add(next, term) as tf.Tensor4D) : term;
      }
      if (next) y = tf.add(y, next) as tf.Tensor4D;
    }
    return y === x ? x.clone() : y;
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
