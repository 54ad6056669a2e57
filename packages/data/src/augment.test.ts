import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { AugmentationSchema, Rng, type InMemoryDataset } from '@contrast/core';
import { BatchAugmentation, sampleCropBox } from './augment.js';
import { blurBatch, gaussianKernels, luminance, rotateHue, saturate } from './transforms.js';
import { gatherPixels, prefetch, stepsPerEpoch, twoViewBatches } from './batches.js';

const input = { height: 28, width: 28, mean: [0], std: [1] };
const noJitter = AugmentationSchema.parse({
  jitter: { p: 0 },
  flip: 0,
  crop: { scale: [1, 1], ratio: [1, 1] },
});

describe('random resized crop boxes', () => {
  it('stay inside the image with area fraction within scale', () => {
    const rng = new Rng(3);
    for (let i = 0; i < 2000; i++) {
      const b = sampleCropBox(rng, 28, 28, [0.2, 1], [3 / 4, 4 / 3]);
      expect(b.top).toBeGreaterThanOrEqual(0);
      expect(b.left).toBeGreaterThanOrEqual(0);
      expect(b.top + b.height).toBeLessThanOrEqual(28);
      expect(b.left + b.width).toBeLessThanOrEqual(28);
      // rounding of w and h lets the area drift a little outside [0.2, 1]
      expect((b.height * b.width) / 784).toBeGreaterThan(0.15);
    }
  });
});

describe('BatchAugmentation', () => {
  it('with scale 1, no flip and no jitter is the identity', () => {
    const x = tf.randomUniform([4, 28, 28, 1], 0, 1, 'float32', 1) as tf.Tensor4D;
    const y = new BatchAugmentation(noJitter, input, new Rng(0)).apply(x);
    expect(tf.max(tf.abs(tf.sub(x, y))).dataSync()[0]).toBeLessThan(1e-5);
  });

  it('flip = 1 mirrors every image left-right', () => {
    const x = tf.randomUniform([3, 28, 28, 1], 0, 1, 'float32', 2) as tf.Tensor4D;
    const cfg = { ...noJitter, flip: 1 };
    const y = new BatchAugmentation(cfg, input, new Rng(0)).apply(x);
    expect(tf.max(tf.abs(tf.sub(tf.image.flipLeftRight(x), y))).dataSync()[0]).toBeLessThan(1e-5);
  });

  it('brightness jitter scales pixels by a factor in [1-s, 1+s] and output stays in [0, 1]', () => {
    const cfg = AugmentationSchema.parse({
      flip: 0,
      crop: { scale: [1, 1], ratio: [1, 1] },
      jitter: { brightness: 0.4, contrast: 0, p: 1 },
    });
    const aug = new BatchAugmentation(cfg, input, new Rng(5));
    const x = tf.fill([64, 28, 28, 1], 0.5) as tf.Tensor4D;
    const params = aug.drawParams(64);
    const y = aug.apply(x, params).arraySync() as number[][][][];
    params.brightness.forEach((b, i) => {
      expect(b).toBeGreaterThanOrEqual(0.6);
      expect(b).toBeLessThanOrEqual(1.4);
      expect(y[i]![3]![5]![0]).toBeCloseTo(Math.min(1, 0.5 * b), 5);
    });
  });

  it('normalises with the dataset statistics', () => {
    const x = tf.fill([2, 28, 28, 1], 0.5) as tf.Tensor4D;
    const y = new BatchAugmentation(
      noJitter,
      { ...input, mean: [0.25], std: [0.5] },
      new Rng(0),
    ).apply(x);
    expect(tf.mean(y).dataSync()[0]).toBeCloseTo(0.5, 5);
  });

  it('is reproducible from the seed and draws two different views', () => {
    const x = tf.randomUniform([8, 28, 28, 1], 0, 1, 'float32', 3) as tf.Tensor4D;
    const cfg = AugmentationSchema.parse({});
    const a = new BatchAugmentation(cfg, input, new Rng(9));
    const b = new BatchAugmentation(cfg, input, new Rng(9));
    const [a1, a2, b1] = [a.apply(x), a.apply(x), b.apply(x)];
    expect(tf.max(tf.abs(tf.sub(a1, b1))).dataSync()[0]).toBe(0);
    expect(tf.max(tf.abs(tf.sub(a1, a2))).dataSync()[0]).toBeGreaterThan(0.1);
  });

  it('leaks no tensors', () => {
    const x = tf.ones([4, 28, 28, 1]) as tf.Tensor4D;
    const aug = new BatchAugmentation(AugmentationSchema.parse({}), input, new Rng(0));
    aug.apply(x).dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) aug.apply(x).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('two-view batches', () => {
  const n = 10;
  const ds: InMemoryDataset = {
    name: 'tiny',
    height: 28,
    width: 28,
    channels: 1,
    numClasses: 2,
    mean: [0],
    std: [1],
    providesIndices: true,
    train: {
      images: new Uint8Array(n * 784).map((_, i) => Math.floor(i / 784) * 20),
      labels: new Uint8Array(n),
      n,
    },
    test: { images: new Uint8Array(0), labels: new Uint8Array(0), n: 0 },
  };

  it('cover each sample once per epoch, with indices matching the pixels', () => {
    const aug = new BatchAugmentation(noJitter, input, new Rng(0));
    const seen: number[] = [];
    for (const b of twoViewBatches({
      dataset: ds,
      augmentation: aug,
      rng: new Rng(1),
      batchSize: 4,
      dropLast: false,
      epochs: 1,
    })) {
      const idx = Array.from(b.indices.dataSync());
      const px = (b.x1.arraySync() as number[][][][]).map((img) => img[0]![0]![0]!);
      idx.forEach((v, i) => expect(px[i]).toBeCloseTo((v * 20) / 255, 5));
      seen.push(...idx);
      tf.dispose([b.x1, b.x2, b.indices]);
    }
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(stepsPerEpoch(10, 4, false)).toBe(3);
    expect(stepsPerEpoch(10, 4, true)).toBe(2);
  });

  it('gathers pixels scaled to [0, 1]', () => {
    expect(gatherPixels(ds.train, [3], ds).dataSync()[0]).toBeCloseTo(60 / 255, 6);
  });

  it('prefetch yields every item in order', async () => {
    const out: number[] = [];
    for await (const v of prefetch([1, 2, 3, 4, 5], 2)) out.push(v);
    expect(out).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('aug+ (MoCo v2): colour, grayscale, blur', () => {
  const rgbInput = { height: 16, width: 16, channels: 3, mean: [0, 0, 0], std: [1, 1, 1] };
  const only = (extra: Record<string, unknown>) =>
    AugmentationSchema.parse({
      crop: { scale: [1, 1], ratio: [1, 1] },
      flip: 0,
      jitter: { brightness: 0, contrast: 0, p: 0 },
      ...extra,
    });
  const image = (seed: number, n = 4) =>
    tf.tensor4d(new Rng(seed).uniformArray(n * 16 * 16 * 3, 0.2, 0.8), [n, 16, 16, 3]);

  it('defaults draw nothing for aug+ (no saturation, hue, grayscale or blur draws)', () => {
    const p = new BatchAugmentation(AugmentationSchema.parse({}), rgbInput, new Rng(0)).drawParams(
      8,
    );
    expect(Object.keys(p).sort()).toEqual(['brightness', 'contrast', 'crops', 'flips', 'order']);
  });

  it('grayscale output has three equal channels equal to the luma', () => {
    const x = image(1);
    const y = new BatchAugmentation(only({ grayscale: 1 }), rgbInput, new Rng(0)).apply(x);
    const [r, g, b] = tf.split(y, 3, 3);
    expect(tf.max(tf.abs(tf.sub(r!, g!))).dataSync()[0]).toBeLessThan(1e-6);
    expect(tf.max(tf.abs(tf.sub(g!, b!))).dataSync()[0]).toBeLessThan(1e-6);
    expect(tf.max(tf.abs(tf.sub(r!, luminance(x)))).dataSync()[0]).toBeLessThan(1e-5);
    tf.dispose([x, y, r!, g!, b!]);
  });

  it('saturation 0 is grayscale, 1 is the identity; a hue turn keeps the luma and 0 / 1 turns are the identity', () => {
    const x = image(2);
    const id = (t: tf.Tensor) => tf.max(tf.abs(tf.sub(t, x))).dataSync()[0]!;
    expect(id(saturate(x, tf.ones([4])))).toBeLessThan(1e-6);
    const gray = saturate(x, tf.zeros([4]));
    expect(tf.max(tf.abs(tf.sub(gray, luminance(x)))).dataSync()[0]).toBeLessThan(1e-6);
    expect(id(rotateHue(x, tf.zeros([4])))).toBeLessThan(1e-3);
    expect(id(rotateHue(x, tf.ones([4])))).toBeLessThan(1e-3);
    const turned = rotateHue(x, tf.tensor1d([0.1, 0.2, 0.3, 0.4]));
    expect(id(turned)).toBeGreaterThan(0.01);
    // mid-range colours and small turns do not clip: the luma is untouched
    const small = rotateHue(x, tf.fill([4], 0.05) as tf.Tensor1D);
    expect(tf.max(tf.abs(tf.sub(luminance(small), luminance(x)))).dataSync()[0]).toBeLessThan(2e-3);
    tf.dispose([x, gray, turned, small]);
  });

  it('Gaussian blur: kernels sum to 1, sigma 0 is the identity, a constant image stays constant, the mean is kept', () => {
    const k = gaussianKernels(Float32Array.from([0, 0.5, 2]), 5);
    for (let i = 0; i < 3; i++) {
      expect(k.slice(i * 5, i * 5 + 5).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    }
    expect(Array.from(k.slice(0, 5))).toEqual([0, 0, 1, 0, 0]);
    expect(k[12]!).toBeGreaterThan(k[11]!); // peaked at the centre
    const flat = tf.fill([3, 16, 16, 3], 0.37) as tf.Tensor4D;
    const blurredFlat = blurBatch(flat, k, 5);
    expect(tf.max(tf.abs(tf.sub(blurredFlat, 0.37))).dataSync()[0]).toBeLessThan(1e-6);
    const x = image(3, 3);
    const y = blurBatch(x, k, 5);
    expect(
      tf.max(tf.abs(tf.sub(tf.slice(y, [0], [1]), tf.slice(x, [0], [1])))).dataSync()[0],
    ).toBeLessThan(1e-6);
    const means = (t: tf.Tensor) => Array.from(tf.mean(t, [1, 2, 3]).dataSync());
    means(y).forEach((m, i) => expect(m).toBeCloseTo(means(x)[i]!, 2));
    // and it smooths: neighbouring pixels differ less after the blur (image 2, sigma 2)
    const roughness = (t: tf.Tensor) =>
      tf
        .mean(
          tf.abs(
            tf.sub(
              tf.slice(t, [2, 0, 1, 0], [1, 16, 15, 3]),
              tf.slice(t, [2, 0, 0, 0], [1, 16, 15, 3]),
            ),
          ),
        )
        .dataSync()[0]!;
    expect(roughness(y)).toBeLessThan(0.5 * roughness(x));
    tf.dispose([flat, blurredFlat, x, y]);
  });

  it('draws blur sigmas in range with the configured probability', () => {
    const aug = new BatchAugmentation(
      only({ blur: { p: 0.5, sigma: [0.1, 2] } }),
      rgbInput,
      new Rng(4),
    );
    const { sigma } = aug.drawParams(4000);
    const on = Array.from(sigma!).filter((s) => s > 0);
    expect(on.length / 4000).toBeCloseTo(0.5, 1);
    expect(Math.min(...on)).toBeGreaterThanOrEqual(0.1);
    expect(Math.max(...on)).toBeLessThanOrEqual(2);
  });
});
