import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ExperimentSchema, Rng } from '@contrast/core';
import { ContrastEncoder, createEncoder, useHandWrittenBackward } from './encoder.js';
import { BatchNorm } from './layers.js';
import { ParamStore } from './params.js';

const spec = (model: Record<string, unknown>, channels = 3, size = 32) => ({
  model: ExperimentSchema.shape.model.parse(model),
  input: { height: size, width: size, channels },
});

describe('ResNet encoders', () => {
  it('ResNet-18 has the torchvision parameter count (fc -> 128, CIFAR and ImageNet stems)', () => {
    // torchvision resnet18: 11,689,512 with a 7x7 stem and a 512->1000 fc.
    const base = 11_689_512 - 513_000 + (512 * 128 + 128);
    const cifar = createEncoder(spec({ encoder: 'resnet18', stem: 'cifar' }), new Rng(0));
    expect(cifar.parameterCount()).toBe(base - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64);
    expect(cifar.featureDim).toBe(512);
    const imagenet = createEncoder(spec({ encoder: 'resnet18', stem: 'imagenet' }), new Rng(0));
    expect(imagenet.parameterCount()).toBe(base);
    tf.dispose([cifar, imagenet].flatMap((e) => e.parameters()));
  });

  it('ResNet-50 (bottleneck blocks) has the torchvision parameter count and 2048 features', () => {
    // torchvision resnet50: 25,557,032 with a 2048->1000 fc
    const imagenet = createEncoder(spec({ encoder: 'resnet50', stem: 'imagenet' }), new Rng(0));
    expect(imagenet.parameterCount()).toBe(25_557_032 - 2_049_000 + (2048 * 128 + 128));
    expect(imagenet.featureDim).toBe(2048);
    imagenet.dispose();
    const small = createEncoder(spec({ encoder: 'resnet50', width: 0.125, dim: 8 }), new Rng(0));
    const x = tf.randomUniform([2, 32, 32, 3]) as tf.Tensor4D;
    const z = small.embed(x, true);
    expect(z.shape).toEqual([2, 8]);
    const f = small.features(x, false);
    expect(f.shape).toEqual([2, 256]); // 8 * 8 * 4 channels at width 1/8
    tf.dispose([x, z, f]);
    small.dispose();
  });

  it('produces L2-normalised embeddings of the right shapes, 1 or 3 channels', () => {
    for (const [channels, size] of [
      [1, 28],
      [3, 32],
    ] as const) {
      const enc = createEncoder(
        spec({ encoder: 'resnet18', width: 0.125, dim: 16 }, channels, size),
        new Rng(1),
      );
      const x = tf.randomNormal([3, size, size, channels]) as tf.Tensor4D;
      const z = enc.embed(x, true);
      expect(z.shape).toEqual([3, 16]);
      (tf.norm(z, 'euclidean', 1).arraySync() as number[]).forEach((n) =>
        expect(n).toBeCloseTo(1, 5),
      );
      expect(enc.features(x, false).shape).toEqual([3, 64]);
      enc.dispose();
    }
  });

  it('a clone computes the same function with its own variables', () => {
    const enc = createEncoder(spec({ encoder: 'convnet', width: 0.25 }, 1, 28), new Rng(2));
    const copy = enc.clone({ trainable: false });
    const x = tf.randomNormal([4, 28, 28, 1]) as tf.Tensor4D;
    expect(tf.max(tf.abs(tf.sub(enc.embed(x, false), copy.embed(x, false)))).dataSync()[0]).toBe(0);
    expect(copy.parameters()[0]).not.toBe(enc.parameters()[0]);
    expect(copy.parameters().every((v) => !v.trainable)).toBe(true);
    expect(enc.parameters().every((v) => v.trainable)).toBe(true);
    expect([...copy.namedVariables().keys()]).toEqual([...enc.namedVariables().keys()]);
  });

  it('in inference keeps one layer of activations alive at a time (evaluation batches fit)', async () => {
    // ResNet-18 CIFAR stem at width 1/4: the stem's output is 8 x 32 x 32 x 16 floats; the whole
    // forward pass holds about 33 of those at once, one basic block about 8
    const enc = createEncoder(spec({ encoder: 'resnet18', width: 0.25, dim: 16 }), new Rng(0));
    const x = tf.randomUniform([8, 32, 32, 3]) as tf.Tensor4D;
    const before = tf.memory().numBytes;
    let f: tf.Tensor2D | undefined;
    const info = await tf.profile(() => {
      f = enc.features(x, false);
      return f;
    });
    const stem = 8 * 32 * 32 * 16 * 4;
    expect((info.peakBytes - before) / stem).toBeLessThan(12);
    expect(tf.memory().numBytes - before).toBe(f!.size * 4); // only the features are left
    tf.dispose([x, f!]);
    enc.dispose();
  });

  it('is reproducible from the seed', () => {
    const a = new ContrastEncoder(spec({ encoder: 'convnet' }, 1, 28), { rng: new Rng(5) });
    const b = new ContrastEncoder(spec({ encoder: 'convnet' }, 1, 28), { rng: new Rng(5) });
    expect(a.parameters()[0]!.arraySync()).toEqual(b.parameters()[0]!.arraySync());
  });
});

describe('BatchNorm', () => {
  it('normalises with batch statistics in training and updates running stats (momentum 0.1, unbiased)', () => {
    const store = new ParamStore(true, new Rng(0));
    const bn = new BatchNorm(store, 'bn', 1);
    // one channel, values 1..4: mean 2.5, biased var 1.25, unbiased var 5/3
    const x = tf.tensor4d([1, 2, 3, 4], [4, 1, 1, 1]);
    const y = bn.apply(x, true).dataSync();
    const sd = Math.sqrt(1.25 + 1e-5);
    expect(Array.from(y)).toEqual([1, 2, 3, 4].map((v) => expect.closeTo((v - 2.5) / sd, 5)));
    expect(bn.runningMean.dataSync()[0]).toBeCloseTo(0.25, 6);
    expect(bn.runningVar.dataSync()[0]).toBeCloseTo(0.9 + 0.1 * (5 / 3), 6);
    // eval mode uses the running statistics
    const e = bn.apply(tf.tensor4d([0.25], [1, 1, 1, 1]), false).dataSync()[0];
    expect(e).toBeCloseTo(0, 5);
  });
});

describe('projection heads', () => {
  it('the MLP head is Linear(F, hidden)-ReLU-Linear(hidden, dim)', () => {
    const lin = createEncoder(spec({ encoder: 'convnet', width: 0.25, dim: 8 }, 1, 28), new Rng(0));
    const mlp = createEncoder(
      spec({ encoder: 'convnet', width: 0.25, dim: 8, head: 'mlp', hiddenDim: 10 }, 1, 28),
      new Rng(0),
    );
    // convnet width 0.25: F = 32; linear head 32*8+8; MLP 32*10+10 + 10*8+8
    expect(mlp.parameterCount() - lin.parameterCount()).toBe(
      32 * 10 + 10 + 10 * 8 + 8 - (32 * 8 + 8),
    );
    const z = mlp.embed(tf.randomNormal([2, 28, 28, 1]) as tf.Tensor4D, false);
    expect(z.shape).toEqual([2, 8]);
  });
});

describe('hand-written backward', () => {
  const cases: [string, Record<string, unknown>, number, number, number][] = [
    ['ResNet-18, CIFAR stem', { encoder: 'resnet18', width: 0.125, dim: 16 }, 3, 16, 4],
    [
      'ResNet-18, ImageNet stem (max-pool)',
      { encoder: 'resnet18', stem: 'imagenet', width: 0.125, dim: 16 },
      3,
      32,
      4,
    ],
    ['ResNet-50 (bottleneck)', { encoder: 'resnet50', width: 0.0625, dim: 16 }, 3, 16, 4],
    ['ConvNet', { encoder: 'convnet', width: 0.25, dim: 16 }, 1, 12, 4],
    ['split BN (2 splits)', { encoder: 'resnet18', width: 0.125, dim: 16, bnSplits: 2 }, 1, 12, 4],
  ];
  for (const [name, model, channels, size, n] of cases) {
    it(`${name}: same embeddings, BN statistics and parameter gradients as tfjs autodiff`, () => {
      const x = tf.randomNormal([n, size, size, channels], 0, 1, 'float32', 3) as tf.Tensor4D;
      const w = tf.randomNormal([n, 16], 0, 1, 'float32', 4);
      const run = (handWritten: boolean) => {
        useHandWrittenBackward(handWritten);
        const enc = createEncoder(spec(model, channels, size), new Rng(5));
        const { value, grads } = tf.variableGrads(
          () => tf.sum(tf.mul(enc.embed(x, true), w)) as tf.Scalar,
          enc.parameters(),
        );
        const stats = [...enc.namedVariables()]
          .filter(([k]) => k.includes('running'))
          .map(([, v]) => v.clone());
        const out = { value, grads: enc.parameters().map((p) => grads[p.name]!), stats };
        enc.dispose();
        return out;
      };
      const before = tf.memory().numTensors;
      const auto = run(false);
      const hand = run(true);
      useHandWrittenBackward(true);
      const rel = (a: tf.Tensor, b: tf.Tensor) =>
        tf.tidy(() => tf.norm(tf.sub(a, b)).dataSync()[0]! / (tf.norm(b).dataSync()[0]! + 1e-12));
      expect(Math.abs(hand.value.dataSync()[0]! - auto.value.dataSync()[0]!)).toBeLessThan(1e-4);
      expect(hand.grads.length).toBe(auto.grads.length);
      hand.grads.forEach((g, i) => expect(rel(g, auto.grads[i]!)).toBeLessThan(1e-3));
      hand.stats.forEach((s, i) => expect(rel(s, auto.stats[i]!)).toBeLessThan(1e-5));
      // every gradient is informative (no parameter silently left at zero)
      expect(hand.grads.every((g) => tf.tidy(() => tf.any(tf.notEqual(g, 0)).dataSync()[0]))).toBe(
        true,
      );
      tf.dispose([auto, hand].flatMap((r) => [r.value, ...r.grads, ...r.stats]));
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, w]);
    });
  }
});
