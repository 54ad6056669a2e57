import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { AugmentationSchema, Rng } from '@contrast/core';
import { BatchAugmentation, type ViewParams } from './augment.js';
import {
  adjustBrightness,
  adjustContrast,
  adjustHue,
  colorJitterBatch,
  filterAxis,
  pilBoxKernels,
  pilBoxRadius,
  pilGaussianBlur,
  resizedCropBatch,
  resizeTaps,
  saturate,
} from './transforms.js';

/** A 1 x w x 1 image holding `values` along its row. */
const row = (values: number[]) => tf.tensor4d(values, [1, 1, values.length, 1]);
const pixels = (t: tf.Tensor) => Array.from(t.dataSync());
const close = (got: number[], want: number[], digits = 5) =>
  want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, digits));

describe('resize as torchvision (bilinear, half-pixel centres, antialias)', () => {
  it('upsamples 4 -> 8 with edge pixels held', () => {
    // source position (i + 0.5) / 2 - 0.5, clamped to [0, 3], interpolated linearly
    const y = resizedCropBatch(
      row([0, 1, 2, 3]).reshape([1, 1, 4, 1]) as tf.Tensor4D,
      [{ top: 0, left: 0, height: 1, width: 4, flip: false }],
      [1, 8],
    );
    close(pixels(y), [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]);
  });

  it('downsamples 8 -> 4 with the triangle filter stretched to the scale (antialias)', () => {
    // centre of output i at 2i + 1, support 2: output 0 weighs pixels 0, 1, 2 by 0.75, 0.75, 0.25
    const y = resizedCropBatch(
      row([0, 1, 2, 3, 4, 5, 6, 7]),
      [{ top: 0, left: 0, height: 1, width: 8, flip: false }],
      [1, 4],
    );
    close(pixels(y), [1.25 / 1.75, 2.5, 4.5, 11 / 1.75]);
  });

  it('reads only inside the crop, and the flip mirrors the output', () => {
    const x = row([0, 1, 2, 3, 4, 5, 6, 7]);
    const crop = { top: 0, left: 2, height: 1, width: 2 };
    const y = resizedCropBatch(
      tf.concat([x, x]) as tf.Tensor4D,
      [
        { ...crop, flip: false },
        { ...crop, flip: true },
      ],
      [1, 4],
    );
    close(pixels(y), [2, 2.25, 2.75, 3, 3, 2.75, 2.25, 2]);
  });

  it('taps sum to 1 and an identity-sized crop is the identity', () => {
    const t = resizeTaps(3, 17, 28);
    for (let i = 0; i < 28; i++) {
      const w = t.weight.slice(i * t.taps, (i + 1) * t.taps);
      expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    }
    const x = tf.randomUniform([2, 5, 6, 3], 0, 1, 'float32', 4) as tf.Tensor4D;
    const full = { top: 0, left: 0, height: 5, width: 6, flip: false };
    const y = resizedCropBatch(x, [full, full], [5, 6]);
    expect(tf.max(tf.abs(tf.sub(x, y))).dataSync()[0]).toBeLessThan(1e-6);
  });
});

describe('resized crops of a batch', () => {
  it('each image gets its own crop, size change and flip (against the taps summed by hand)', () => {
    const [n, h, w, c] = [3, 9, 7, 3];
    const x = tf.randomUniform([n, h, w, c], 0, 1, 'float32', 3) as tf.Tensor4D;
    const crops = [
      { top: 0, left: 0, height: 9, width: 7, flip: false }, // rows 9 -> 4 (antialiased), cols 7 -> 5
      { top: 2, left: 1, height: 3, width: 4, flip: true }, // upsampled, mirrored
      { top: 5, left: 3, height: 4, width: 4, flip: false },
    ];
    const out: [number, number] = [4, 5];
    const y = pixels(resizedCropBatch(x, crops, out));
    const px = pixels(x);
    crops.forEach((k, i) => {
      const r = resizeTaps(k.top, k.height, out[0]);
      const q = resizeTaps(k.left, k.width, out[1], k.flip);
      const want: number[] = [];
      for (let a = 0; a < out[0]; a++)
        for (let b = 0; b < out[1]; b++)
          for (let ch = 0; ch < c; ch++) {
            let v = 0;
            for (let t = 0; t < r.taps; t++)
              for (let u = 0; u < q.taps; u++) {
                const row = r.index[a * r.taps + t]!;
                const col = q.index[b * q.taps + u]!;
                v +=
                  r.weight[a * r.taps + t]! *
                  q.weight[b * q.taps + u]! *
                  px[((i * h + row) * w + col) * c + ch]!;
              }
            want.push(v);
          }
      const size = out[0] * out[1] * c;
      close(y.slice(i * size, (i + 1) * size), want);
    });
  });

  it('refuses a crop outside the image, and a crop count that is not the batch size', () => {
    const x = tf.zeros([2, 4, 4, 1]) as tf.Tensor4D;
    const inside = { top: 0, left: 0, height: 4, width: 4, flip: false };
    expect(() => resizedCropBatch(x, [inside, { ...inside, left: 1 }], [4, 4])).toThrow(
      /crop 1 .* is not inside the 4x4 image/,
    );
    expect(() => resizedCropBatch(x, [inside], [4, 4])).toThrow(/1 crops for 2 images/);
  });
});

describe("ColorJitter as torchvision's (random order, clamp after each adjustment)", () => {
  // one image per order; pixels 0.2 and 0.9, brightness 1.4, contrast 0.6
  const params = (order: number[][]) => ({
    brightness: Float32Array.from(order.map(() => 1.4)),
    contrast: Float32Array.from(order.map(() => 0.6)),
    order: Int32Array.from(order.flat()),
  });

  it('brightness first clamps before the contrast sees the mean', () => {
    const x = tf.concat([row([0.2, 0.9]), row([0.2, 0.9])]) as tf.Tensor4D;
    const y = colorJitterBatch(
      x,
      params([
        [0, 1, 2, 3],
        [1, 0, 3, 2],
      ]),
    );
    // b then c: [0.28, 1.26 -> 1], mean 0.64, 0.6 y + 0.4 * 0.64 = [0.424, 0.856]
    // c then b: mean 0.55, [0.34, 0.76], x 1.4 = [0.476, 1.064 -> 1]
    close(pixels(y), [0.424, 0.856, 0.476, 1]);
  });

  it("'fixed-order' keeps the earlier behaviour (no clamp after brightness)", () => {
    const cfg = (semantics: string) =>
      AugmentationSchema.parse({
        crop: { scale: [1, 1], ratio: [1, 1] },
        flip: 0,
        jitter: { brightness: 0.4, contrast: 0.4, p: 1, semantics },
      });
    const input = { height: 1, width: 2, mean: [0], std: [1] };
    const p: ViewParams = {
      crops: Int32Array.from([0, 0, 1, 2]),
      flips: new Uint8Array(1),
      brightness: Float32Array.from([1.4]),
      contrast: Float32Array.from([0.6]),
    };
    const fixed = new BatchAugmentation(cfg('fixed-order'), input, new Rng(0));
    // [0.28, 1.26], mean 0.77 (unclamped), 0.6 y + 0.4 * 0.77 = [0.476, 1.064 -> 1]
    close(pixels(fixed.apply(row([0.2, 0.9]), p)), [0.476, 1]);
    const tv = new BatchAugmentation(cfg('torchvision'), input, new Rng(0));
    close(
      pixels(tv.apply(row([0.2, 0.9]), { ...p, order: Int32Array.from([0, 1, 2, 3]) })),
      [0.424, 0.856],
    );
  });

  it('each image gets its own order and factors; an image left alone is bit-identical', () => {
    // 6 RGB images, each with its own order and factors; image 4 was not jittered
    const x = tf.randomUniform([6, 3, 4, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
    const orders = [
      [0, 1, 2, 3],
      [3, 2, 1, 0],
      [1, 3, 0, 2],
      [2, 0, 3, 1],
      [0, 1, 2, 3],
      [3, 0, 2, 1],
    ];
    const p = {
      brightness: Float32Array.from([1.3, 0.7, 1.1, 0.9, 1, 1.25]),
      contrast: Float32Array.from([0.8, 1.2, 0.65, 1.35, 1, 0.9]),
      saturation: Float32Array.from([1.4, 0.6, 1.2, 0.75, 1, 1.1]),
      hue: Float32Array.from([0.05, -0.08, 0.1, -0.02, 0, 0.07]),
      order: Int32Array.from(orders.flat()),
    };
    const tensors = tf.memory().numTensors;
    const y = colorJitterBatch(x, p);
    expect(tf.memory().numTensors).toBe(tensors + 1); // the result only
    // reference: one image at a time, the four adjustments in its order
    const ops = [adjustBrightness, adjustContrast, saturate, adjustHue];
    const factors = [p.brightness, p.contrast, p.saturation, p.hue];
    orders.forEach((order, i) => {
      let want = tf.slice(x, [i, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
      for (const op of order) want = ops[op]!(want, tf.tensor1d([factors[op]![i]!]));
      const got = tf.slice(y, [i, 0, 0, 0], [1, -1, -1, -1]);
      close(pixels(got), pixels(want));
    });
    expect(pixels(tf.slice(y, [4, 0, 0, 0], [1, -1, -1, -1]))).toEqual(
      pixels(tf.slice(x, [4, 0, 0, 0], [1, -1, -1, -1])),
    );
    // one channel: saturation and hue are skipped, brightness and contrast in each image's order
    const g = tf.randomUniform([3, 2, 2, 1], 0, 1, 'float32', 8) as tf.Tensor4D;
    const q = { ...p, brightness: p.brightness.slice(0, 3), contrast: p.contrast.slice(0, 3) };
    const yg = colorJitterBatch(g, { ...q, order: Int32Array.from(orders.slice(0, 3).flat()) });
    orders.slice(0, 3).forEach((order, i) => {
      let want = tf.slice(g, [i, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
      for (const op of order.filter((o) => o < 2)) {
        want = ops[op]!(want, tf.tensor1d([factors[op]![i]!]));
      }
      close(pixels(tf.slice(yg, [i, 0, 0, 0], [1, -1, -1, -1])), pixels(want));
    });
  });

  it('contrast blends with the mean of the grayscale (luma), not of the channels', () => {
    const red = tf.tensor4d([1, 0, 0], [1, 1, 1, 3]);
    // luma 0.299: 0.5 * (1, 0, 0) + 0.5 * 0.299
    close(pixels(adjustContrast(red, tf.tensor1d([0.5]))), [0.6495, 0.1495, 0.1495]);
  });

  it('hue shifts in HSV: red + 1/3 turn is green, - 1/3 is blue, orange + 1/2 is azure', () => {
    const x = tf.tensor4d([1, 0, 0, 1, 0, 0, 1, 0.5, 0], [3, 1, 1, 3]);
    const y = adjustHue(x, tf.tensor1d([1 / 3, -1 / 3, 0.5]));
    close(pixels(y), [0, 1, 0, 0, 0, 1, 0, 0.5, 1]);
    // grey stays grey, a zero shift is the identity
    const g = tf.tensor4d([0.3, 0.3, 0.3, 0.2, 0.7, 0.4], [2, 1, 1, 3]);
    close(pixels(adjustHue(g, tf.tensor1d([0.25, 0]))), [0.3, 0.3, 0.3, 0.2, 0.7, 0.4]);
  });

  it("matches torchvision's adjust_hue on stored values (grey pixels, ties for the maximum)", () => {
    // fixtures/adjust-hue.json, made in the torch venv with:
    //   torch.manual_seed(0); x = torch.rand(6, 3, 3, 4); x[0, :, :2] = 0.5; x[1, 0] = x[1, 1]
    //   x[2, 2] = x[2, 0]; y[i] = F.adjust_hue(x[i], shifts[i]), stored NHWC to 8 decimals
    const f = JSON.parse(
      readFileSync(new URL('./fixtures/adjust-hue.json', import.meta.url), 'utf8'),
    ) as { shape: [number, number, number, number]; x: number[]; shifts: number[]; y: number[] };
    const y = adjustHue(tf.tensor4d(f.x, f.shape), tf.tensor1d(f.shifts));
    close(pixels(y), f.y);
  });

  it('draws a permutation per jittered view and the identity order otherwise', () => {
    const cfg = AugmentationSchema.parse({ jitter: { p: 0.5 } });
    const aug = new BatchAugmentation(
      cfg,
      { height: 8, width: 8, mean: [0], std: [1] },
      new Rng(2),
    );
    const p = aug.drawParams(400);
    const orders = new Set<string>();
    for (let i = 0; i < 400; i++) {
      const o = Array.from(p.order!.slice(i * 4, i * 4 + 4));
      expect([...o].sort()).toEqual([0, 1, 2, 3]);
      if (p.brightness[i] === 1 && p.contrast[i] === 1) expect(o).toEqual([0, 1, 2, 3]);
      orders.add(o.join());
    }
    expect(orders.size).toBe(24);
  });
});

describe("MoCo v2's blur: PIL's GaussianBlur(radius = sigma)", () => {
  it('box radius from the variance: sigma 2 over 3 passes is l = 1, a = 0.375', () => {
    // sigma^2 / 3 = 4/3; L = sqrt(17); l = 1; a = 3 (2 - 4) / (6 (4/3 - 4)) = 0.375
    const { l, a } = pilBoxRadius(2);
    expect(l).toBe(1);
    expect(a).toBeCloseTo(0.375, 6);
    const { kernels, size } = pilBoxKernels(Float32Array.from([2, 0]));
    expect(size).toBe(5);
    close(Array.from(kernels), [0.1, 0.8 / 3, 0.8 / 3, 0.8 / 3, 0.1, 0, 0, 1, 0, 0], 6);
  });

  it('an impulse spreads with variance sigma^2 and keeps its mass', () => {
    const n = 41;
    const impulse = row(Array.from({ length: n }, (_, i) => (i === 20 ? 1 : 0)));
    for (const sigma of [0.7, 2]) {
      const y = pixels(pilGaussianBlur(impulse, Float32Array.from([sigma])));
      const mass = y.reduce((a, b) => a + b, 0);
      const variance = y.reduce((a, v, i) => a + v * (i - 20) ** 2, 0);
      expect(mass).toBeCloseTo(1, 5);
      expect(variance).toBeCloseTo(sigma * sigma, 4);
    }
  });

  it('repeats the edge pixel: one pass on a step at the border', () => {
    const { kernels, size } = pilBoxKernels(Float32Array.from([2]));
    const y = filterAxis(row([1, 0, 0, 0, 0, 0]), kernels, size, 2, 'edge');
    // (0.375 x[-2] + x[-1] + x[0] + x[1] + 0.375 x[2]) / 3.75 with x[-2] = x[-1] = x[0] = 1
    close(pixels(y).slice(0, 3), [2.375 / 3.75, 1.375 / 3.75, 0.375 / 3.75]);
  });
});
