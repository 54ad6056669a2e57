import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ConfigError, ExperimentSchema, Rng } from '@contrast/core';
import { ContrastEncoder } from './encoder.js';
import { selfAttention, sinCosPositionEmbedding } from './vit.js';
import { positionResampleMatrix } from './pos-interp.js';

/** A ViT encoder on side x side x 1 (28 with patch 7: 16 patches + the class token), tiny sizes. */
function tinyVit(model: Record<string, unknown> = {}, seed = 1, side = 28): ContrastEncoder {
  const spec = {
    model: ExperimentSchema.shape.model.parse({
      encoder: 'vit',
      patchSize: 7,
      embedDim: 16,
      depth: 2,
      heads: 2,
      ...model,
    }),
    input: { height: side, width: side, channels: 1 },
  };
  return new ContrastEncoder(spec, { rng: new Rng(seed) });
}

const images = (n: number, seed = 5) => tf.randomNormal([n, 28, 28, 1], 0, 1, 'float32', seed);

describe('ViT (timm VisionTransformer on tfjs autodiff)', () => {
  it('maps images to the class token [N, embedDim] and projects it to [N, model.dim]', () => {
    const enc = tinyVit({ embedDim: 16, head: 'mlp', hiddenDim: 24 });
    const x = images(3) as tf.Tensor4D;
    const f = enc.features(x, false);
    const z = enc.embed(x, true);
    expect(enc.featureDim).toBe(16);
    expect(f.shape).toEqual([3, 16]);
    expect(z.shape).toEqual([3, 128]);
    // the final LayerNorm (weight 1, bias 0 at init): each feature row has mean 0, variance ~1
    const { mean, variance } = tf.moments(f, 1);
    expect(Math.max(...mean.abs().dataSync())).toBeLessThan(1e-5);
    expect(Math.min(...variance.dataSync())).toBeGreaterThan(0.99);
    tf.dispose([x, f, z, mean, variance]);
    enc.dispose();
  });

  it('self-attention equals the hand-computed softmax(q k^T / sqrt(d)) v (2 tokens, 1 head, identity projections)', () => {
    // x = [[1, 2], [3, -1]], q = k = v = x: q k^T / sqrt 2 = [[5, 1], [1, 10]] / sqrt 2, so
    // row 0 weighs token 0 by sigmoid(4 / sqrt 2) = 0.944193 and row 1 token 1 by sigmoid(9 / sqrt 2) = 0.998280
    const x = tf.tensor3d([
      [
        [1, 2],
        [3, -1],
      ],
    ]);
    const identity3 = { apply: (t: tf.Tensor) => tf.concat([t, t, t], -1) };
    const identity = { apply: (t: tf.Tensor) => t };
    const out = selfAttention(x, identity3, identity, 1);
    const p0 = 1 / (1 + Math.exp(-4 / Math.SQRT2));
    const p1 = 1 / (1 + Math.exp(-9 / Math.SQRT2));
    expect(p0).toBeCloseTo(0.944193, 6);
    expect(p1).toBeCloseTo(0.99828, 6);
    const want = [
      p0 * 1 + (1 - p0) * 3,
      p0 * 2 - (1 - p0),
      (1 - p1) * 1 + p1 * 3,
      (1 - p1) * 2 - p1,
    ];
    expect(out.shape).toEqual([1, 2, 2]);
    const got = out.dataSync();
    want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 5));
    tf.dispose([x, out]);
  });

  it('two heads attend separately: each head softmaxes over its own half of the channels', () => {
    // head 0 sees channel 0 (values 1, 2), head 1 channel 1 (values 0, 1); one channel per
    // head, so no scaling. Head 0's scores [[1, 2], [2, 4]]: token 0 weighs token 1 by
    // sigmoid(1), token 1 by sigmoid(2). Head 1's [[0, 0], [0, 1]]: token 0 averages,
    // token 1 weighs token 1 by sigmoid(1).
    const x = tf.tensor3d([
      [
        [1, 0],
        [2, 1],
      ],
    ]);
    const identity3 = { apply: (t: tf.Tensor) => tf.concat([t, t, t], -1) };
    const out = selfAttention(x, identity3, { apply: (t: tf.Tensor) => t }, 2);
    const sig = (z: number) => 1 / (1 + Math.exp(-z));
    const want = [1 + sig(1), 0.5, 1 + sig(2), sig(1)];
    expect(want.map((w) => +w.toFixed(6))).toEqual([1.731059, 0.5, 1.880797, 0.731059]);
    const got = out.dataSync();
    want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 5));
    tf.dispose([x, out]);
  });

  it("vit-tiny at 224x224, patch 16, has timm's parameter count without a classifier (5,524,416)", () => {
    // timm.create_model('vit_tiny_patch16_224', num_classes=0): 5,524,416 parameters
    // (5,717,416 with its 1000-class head: + 192 * 1000 + 1000); counted in the PyTorch venv
    const spec = {
      model: ExperimentSchema.shape.model.parse({ encoder: 'vit-tiny' }),
      input: { height: 224, width: 224, channels: 3 },
    };
    const enc = new ContrastEncoder(spec, { rng: new Rng(2) });
    expect(enc.backboneParameterCount()).toBe(5_524_416);
    expect(enc.featureDim).toBe(192);
    enc.dispose();
  });

  it('gradients reach every parameter (patch embedding, class token, positions, every block, the norm)', () => {
    const enc = tinyVit({ head: 'mlp' });
    const x = images(4) as tf.Tensor4D;
    const names = [...enc.namedVariables()].filter(([, v]) => v.trainable).map(([k]) => k);
    const { grads } = tf.variableGrads(() =>
      tf.sum(tf.mul(enc.embed(x, true), tf.randomNormal([4, 128], 0, 1, 'float32', 9))),
    );
    const byId = new Map([...enc.namedVariables()].map(([k, v]) => [v.name, k]));
    const reached = Object.entries(grads)
      .filter(([, g]) => tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!) > 0)
      .map(([id]) => byId.get(id));
    expect(names).toContain('cls_token');
    expect(names).toContain('blocks/1/attn/qkv/w');
    expect(new Set(reached)).toEqual(new Set(names));
    tf.dispose([x, ...Object.values(grads)]);
    enc.dispose();
  });

  it("a smaller view (a local crop) sees its positions resampled as DINO's interpolate_pos_encoding", () => {
    const big = tinyVit({}, 3);
    // the same weights built for 14x14 (a 2x2 grid), its positions set to [cls, M * patches]
    const small = tinyVit({}, 4, 14);
    const bigVars = new Map(big.namedVariables());
    const m = tf.tensor2d(positionResampleMatrix(4, 4, 2, 2), [4, 16]);
    tf.tidy(() => {
      for (const [name, v] of small.namedVariables()) {
        const src = bigVars.get(name)!;
        if (name !== 'pos_embed') v.assign(src);
        else {
          const d = src.shape[2]!;
          const patches = tf.matMul(m, src.slice([0, 1, 0], [1, 16, d]).reshape([16, d]));
          v.assign(tf.concat([src.slice([0, 0, 0], [1, 1, d]), patches.expandDims(0)], 1));
        }
      }
    });
    const x = tf.randomNormal([3, 14, 14, 1], 0, 1, 'float32', 8) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const f = big.features(x, true);
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(f.shape).toEqual([3, 16]);
    const ref = small.features(x, true);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(f, ref))).dataSync()[0])).toBeLessThan(1e-5);
    // gradients reach all 16 learned positions (and the class token's) through the resampling
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(big.features(x, true))));
    const id = bigVars.get('pos_embed')!.name;
    const reached = tf.tidy(() => tf.sum(tf.abs(grads[id]!), 2).dataSync());
    expect([...reached].filter((g) => g > 0)).toHaveLength(17);
    tf.dispose([m, x, f, ref, value, ...Object.values(grads)]);
    big.dispose();
    small.dispose();
  });

  it('refuses a view whose side the patch does not divide, naming the fix', () => {
    const enc = tinyVit();
    const x = tf.zeros([1, 12, 12, 1]) as tf.Tensor4D;
    expect(() => enc.features(x, false)).toThrow(ConfigError);
    expect(() => enc.features(x, false)).toThrow(/7 does not divide a 12x12 view/);
    x.dispose();
    enc.dispose();
  });

  it("init 'timm': weights std 0.02, biases 0, LayerNorm 1 / 0; 'moco-v3': fixed sin-cos positions, xavier qkv", () => {
    const std = (v: tf.Tensor) => tf.tidy(() => Math.sqrt(tf.moments(v).variance.dataSync()[0]!));
    const timm = tinyVit({ embedDim: 32, init: 'timm' });
    const t = timm.namedVariables();
    expect(std(t.get('blocks/0/mlp/fc1/w')!)).toBeCloseTo(0.02, 3);
    expect(std(t.get('pos_embed')!)).toBeCloseTo(0.02, 2);
    expect(
      t
        .get('blocks/0/attn/qkv/b')!
        .dataSync()
        .every((v) => v === 0),
    ).toBe(true);
    expect(
      t
        .get('norm/w')!
        .dataSync()
        .every((v) => v === 1),
    ).toBe(true);
    expect(t.get('pos_embed')!.trainable).toBe(true);
    timm.dispose();

    const moco = tinyVit({ embedDim: 32, init: 'moco-v3' });
    const m = moco.namedVariables();
    // xavier uniform over q, k, v each [32, 32]: bound sqrt(6 / 64), std bound / sqrt 3
    expect(std(m.get('blocks/0/attn/qkv/w')!)).toBeCloseTo(Math.sqrt(6 / 64) / Math.sqrt(3), 2);
    expect(m.get('pos_embed')!.trainable).toBe(false);
    expect([...m.get('pos_embed')!.dataSync()]).toEqual([...sinCosPositionEmbedding(4, 4, 32)]);
    expect(moco.parameters()).not.toContain(m.get('pos_embed'));
    moco.dispose();
  });

  it("sin-cos positions follow MoCo v3's table (torch.meshgrid 'ij' of the patch grid)", () => {
    // dim 4: [sin(a), cos(a), sin(b), cos(b)] with omega 1, a = m // h, b = m % h for token m
    const pe = sinCosPositionEmbedding(2, 2, 4);
    expect([...pe.slice(0, 4)]).toEqual([0, 0, 0, 0]); // the class token's row
    const row = (m: number) => [...pe.slice((1 + m) * 4, (2 + m) * 4)];
    const at = (a: number, b: number) => [Math.sin(a), Math.cos(a), Math.sin(b), Math.cos(b)];
    [at(0, 0), at(0, 1), at(1, 0), at(1, 1)].forEach((want, m) =>
      row(m).forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 6)),
    );
  });

  it('a clone holds the same values and computes the same features', () => {
    const enc = tinyVit();
    const copy = enc.clone({ trainable: false });
    const x = images(2) as tf.Tensor4D;
    const [a, b] = [enc.features(x, false), copy.features(x, false)];
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0])).toBe(0);
    tf.dispose([a, b, x]);
    enc.dispose();
    copy.dispose();
  });

  it('refuses a patch size that does not tile the image, and heads that do not divide dim', () => {
    expect(() => tinyVit({ patchSize: 5 })).toThrow(ConfigError);
    expect(() => tinyVit({ patchSize: 5 })).toThrow(
      /model\.patchSize.*use one of: 1, 2, 4, 7, 14/s,
    );
    expect(() => tinyVit({ heads: 3 })).toThrow(/model\.heads/);
  });
});
