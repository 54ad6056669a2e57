import * as tf from '@tensorflow/tfjs';
import { ConfigError, z, type Rng } from '@contrast/core';
import type { Backbone } from './backbone.js';
import type { ParamStore } from './params.js';
import { positionResampleMatrix } from './pos-interp.js';

const positiveInt = z.number().int().positive();

/** Sizes of the ViT presets (Dosovitskiy et al. 2021; DeiT's tiny / small, timm's vit_tiny / vit_small). */
export const VIT_PRESETS = {
  vit: { dim: 192, depth: 12, heads: 3 },
  'vit-tiny': { dim: 192, depth: 12, heads: 3 },
  'vit-small': { dim: 384, depth: 12, heads: 6 },
} as const;

/**
 * A ViT's own `model` fields, with a preset's sizes as defaults (`vit` is
 * ViT-Tiny's sizes, meant to be set freely).
 */
export function vitOptionsSchema(preset: keyof typeof VIT_PRESETS) {
  const p = VIT_PRESETS[preset];
  return z
    .object({
      patchSize: positiveInt
        .default(16)
        .describe(
          "Side of the square patches in pixels (the patch embedding is a conv with kernel = stride = patchSize); it must divide the image side (28x28: 4, 7 or 14) and every view's crop size.",
        ),
      embedDim: positiveInt
        .default(p.dim)
        .describe(
          `Token width (timm's embed_dim; ${preset}: ${p.dim}); the features' width. model.dim is the projection's.`,
        ),
      depth: positiveInt.default(p.depth).describe(`Transformer blocks (${preset}: ${p.depth}).`),
      heads: positiveInt
        .default(p.heads)
        .describe(`Attention heads per block; must divide embedDim (${preset}: ${p.heads}).`),
      mlpRatio: z
        .number()
        .positive()
        .default(4)
        .describe('Hidden width of each MLP as a multiple of embedDim (4 in ViT).'),
      init: z
        .enum(['timm', 'moco-v3'])
        .default('timm')
        .describe(
          "Initialisation. 'timm' (timm's VisionTransformer): linear weights and the position embedding truncated normal std 0.02, biases 0, class token normal std 1e-6, the patch projection as PyTorch's Conv2d default, LayerNorm 1 / 0. 'moco-v3' (MoCo v3's vits.py): a fixed 2-D sin-cos position embedding (a buffer, not trained), xavier-uniform linear weights (qkv as three D x D matrices), xavier-uniform patch projection, biases 0, class token normal std 1e-6.",
        ),
    })
    .strict();
}

export type VitOptions = z.infer<ReturnType<typeof vitOptionsSchema>>;

/** LayerNorm eps of ViT (timm's `partial(nn.LayerNorm, eps=1e-6)`). */
export const VIT_LN_EPS = 1e-6;

/** Truncated normal at timm's absolute bounds [-2, 2] (trunc_normal_(std=.02): in effect a normal). */
function truncNormal(rng: Rng, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v: number;
    do v = rng.normal() * std;
    while (v < -2 || v > 2);
    out[i] = v;
  }
  return out;
}

/** Uniform on [-bound, bound]. */
const uniform = (rng: Rng, n: number, bound: number) => rng.uniformArray(n, -bound, bound);

/**
 * MoCo v3's fixed 2-D sin-cos position embedding (vits.py, `build_2d_sincos_position_embedding`,
 * temperature 10000) for a grid of `gh` x `gw` patches, with a zero row for the class token:
 * [1 + gh * gw, dim]. dim must be a multiple of 4.
 */
export function sinCosPositionEmbedding(gh: number, gw: number, dim: number): Float32Array {
  const quarter = dim / 4;
  const out = new Float32Array((1 + gh * gw) * dim);
  const omega = Array.from({ length: quarter }, (_, i) => 1 / 10000 ** (i / quarter));
  for (let m = 0; m < gh * gw; m++) {
    // torch.meshgrid(grid_w, grid_h) ('ij') flattened: token m (row-major patches)
    // gets a = m // gh in the first half of the channels and b = m % gh in the second
    const [a, b] = [Math.floor(m / gh), m % gh];
    const row = (1 + m) * dim;
    omega.forEach((o, i) => {
      out[row + i] = Math.sin(a * o);
      out[row + quarter + i] = Math.cos(a * o);
      out[row + 2 * quarter + i] = Math.sin(b * o);
      out[row + 3 * quarter + i] = Math.cos(b * o);
    });
  }
  return out;
}

/** A dense layer [in, out] + bias, as nn.Linear computes it on the last axis. */
class Dense {
  readonly w: tf.Variable;
  readonly b: tf.Variable;

  constructor(
    s: ParamStore,
    name: string,
    fanIn: number,
    fanOut: number,
    init: 'timm' | 'moco-v3',
    /** MoCo v3's qkv: xavier over each of q, k, v (fanOut / 3 outputs). */
    xavierFanOut = fanOut,
  ) {
    this.w = s.drawn(`${name}/w`, [fanIn, fanOut], (rng) =>
      init === 'timm'
        ? truncNormal(rng, fanIn * fanOut, 0.02)
        : uniform(rng, fanIn * fanOut, Math.sqrt(6 / (fanIn + xavierFanOut))),
    );
    this.b = s.param(`${name}/b`, [fanOut], 0);
  }

  /** [..., in] -> [..., out]. */
  apply(x: tf.Tensor): tf.Tensor {
    const shape = x.shape;
    const flat = x.reshape([-1, shape[shape.length - 1]!]) as tf.Tensor2D;
    const y = tf.add(tf.matMul(flat, this.w as tf.Tensor2D), this.b);
    return y.reshape([...shape.slice(0, -1), this.w.shape[1]!]);
  }
}

/** LayerNorm over the last axis, eps 1e-6, weight 1 and bias 0 at init. */
class LayerNorm {
  readonly w: tf.Variable;
  readonly b: tf.Variable;

  constructor(s: ParamStore, name: string, dim: number) {
    this.w = s.param(`${name}/w`, [dim], 1);
    this.b = s.param(`${name}/b`, [dim], 0);
  }

  apply(x: tf.Tensor): tf.Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    const norm = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, VIT_LN_EPS)));
    return tf.add(tf.mul(norm, this.w), this.b);
  }
}

/**
 * Multi-head self-attention of tokens x [N, T, D] (timm's Attention, qkv with bias):
 * softmax(q k^T / sqrt(D / heads)) v per head, heads concatenated, then the output
 * projection. q, k, v come from one [D, 3D] matrix whose outputs are ordered
 * (q | k | v, each head after head), as timm's qkv.
 */
export function selfAttention(
  x: tf.Tensor3D,
  qkv: { apply(t: tf.Tensor): tf.Tensor },
  proj: { apply(t: tf.Tensor): tf.Tensor },
  heads: number,
): tf.Tensor3D {
  const [n, t, d] = x.shape;
  const hd = d / heads;
  // [N, T, 3, H, hd] -> [3, N, H, T, hd], then each of q, k, v as [N * H, T, hd]
  const parts = tf.transpose(qkv.apply(x).reshape([n, t, 3, heads, hd]), [2, 0, 3, 1, 4]);
  const [q, k, v] = tf.unstack(parts).map((p) => p.reshape([n * heads, t, hd]) as tf.Tensor3D);
  const scores = tf.mul(tf.matMul(q!, k!, false, true), 1 / Math.sqrt(hd));
  const attn = tf.softmax(scores) as tf.Tensor3D;
  const out = tf.matMul(attn, v!).reshape([n, heads, t, hd]);
  const merged = tf.transpose(out, [0, 2, 1, 3]).reshape([n, t, d]);
  return proj.apply(merged) as tf.Tensor3D;
}

/** Exact GELU, 0.5 x (1 + erf(x / sqrt 2)) (nn.GELU's default). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** A pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)). */
class Block {
  private readonly norm1: LayerNorm;
  private readonly qkv: Dense;
  private readonly proj: Dense;
  private readonly norm2: LayerNorm;
  private readonly fc1: Dense;
  private readonly fc2: Dense;

  constructor(
    s: ParamStore,
    name: string,
    private readonly o: VitOptions,
  ) {
    const d = o.embedDim;
    const hidden = Math.round(d * o.mlpRatio);
    this.norm1 = new LayerNorm(s, `${name}/norm1`, d);
    this.qkv = new Dense(s, `${name}/attn/qkv`, d, 3 * d, o.init, d);
    this.proj = new Dense(s, `${name}/attn/proj`, d, d, o.init);
    this.norm2 = new LayerNorm(s, `${name}/norm2`, d);
    this.fc1 = new Dense(s, `${name}/mlp/fc1`, d, hidden, o.init);
    this.fc2 = new Dense(s, `${name}/mlp/fc2`, hidden, d, o.init);
  }

  apply(x: tf.Tensor3D): tf.Tensor3D {
    const a = selfAttention(this.norm1.apply(x) as tf.Tensor3D, this.qkv, this.proj, this.o.heads);
    const y = tf.add(x, a);
    const m = this.fc2.apply(gelu(this.fc1.apply(this.norm2.apply(y))));
    return tf.add(y, m) as tf.Tensor3D;
  }
}

/**
 * Vision Transformer backbone (Dosovitskiy et al. 2021; timm's VisionTransformer
 * with class-token pooling): patch embedding (conv, kernel = stride = patchSize),
 * a class token, a position embedding, `depth` pre-norm blocks (LayerNorm eps
 * 1e-6, multi-head self-attention with qkv bias, MLP of ratio `mlpRatio` with
 * exact GELU), a final LayerNorm; the feature is the class token [N, embedDim].
 * Variables are named as timm's state_dict with `/` (`blocks/0/attn/qkv/w`,
 * `cls_token`, `pos_embed`). Trained through tfjs's autodiff (no hand-written
 * backward). No dropout, drop-path or BatchNorm (`training` changes nothing).
 * An input of another size than the one it was built for (a multi-crop view's
 * local crops) gets its patch positions resampled bicubically to its grid, as
 * DINO's interpolate_pos_encoding (see pos-interp.ts); with `init: moco-v3` the
 * fixed sin-cos table is resampled too, not rebuilt for the new grid.
 * @throws ConfigError when patchSize does not divide the image sides (at build,
 *   or of a view at apply) or heads does not divide dim.
 */
export class VitBackbone implements Backbone {
  readonly featureDim: number;
  private readonly patchW: tf.Variable;
  private readonly patchB: tf.Variable;
  private readonly cls: tf.Variable;
  private readonly pos: tf.Variable;
  private readonly blocks: Block[] = [];
  private readonly norm: LayerNorm;
  /** The patch grid the position embedding was built for. */
  private readonly grid: [number, number];
  /** Position resampling matrices by target grid ('h0xw0'). */
  private readonly resample = new Map<string, Float32Array>();

  constructor(
    s: ParamStore,
    readonly options: VitOptions,
    input: { height: number; width: number; channels: number },
  ) {
    const { patchSize: p, embedDim: d } = options;
    checkSizes(options, input);
    const [gh, gw] = [input.height / p, input.width / p];
    this.grid = [gh, gw];
    const c = input.channels;
    const fanIn = p * p * c;
    // PyTorch's Conv2d default (kaiming_uniform a=sqrt(5): U(+-1/sqrt(fan_in))) in timm;
    // MoCo v3 xavier-uniforms the projection viewed as a [D, p*p*C] matrix
    const bound = options.init === 'timm' ? 1 / Math.sqrt(fanIn) : Math.sqrt(6 / (fanIn + d));
    this.patchW = s.drawn('patch_embed/proj/w', [p, p, c, d], (r) => uniform(r, fanIn * d, bound));
    this.patchB =
      options.init === 'timm'
        ? s.drawn('patch_embed/proj/b', [d], (r) => uniform(r, d, 1 / Math.sqrt(fanIn)))
        : s.param('patch_embed/proj/b', [d], 0);
    this.cls = s.drawn('cls_token', [1, 1, d], (r) => r.normalArray(d, 1e-6));
    const tokens = 1 + gh * gw;
    this.pos =
      options.init === 'timm'
        ? s.drawn('pos_embed', [1, tokens, d], (r) => truncNormal(r, tokens * d, 0.02))
        : s.fixed('pos_embed', [1, tokens, d], sinCosPositionEmbedding(gh, gw, d));
    for (let i = 0; i < options.depth; i++) this.blocks.push(new Block(s, `blocks/${i}`, options));
    this.norm = new LayerNorm(s, 'norm', d);
    this.featureDim = d;
  }

  apply(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const p = this.options.patchSize;
      const d = this.options.embedDim;
      const patches = tf.add(tf.conv2d(x, this.patchW as tf.Tensor4D, p, 'valid'), this.patchB);
      const n = x.shape[0];
      let t = patches.reshape([n, -1, d]) as tf.Tensor3D;
      t = tf.concat([tf.tile(this.cls as tf.Tensor3D, [n, 1, 1]), t], 1);
      t = tf.add(t, this.positions(x.shape[1], x.shape[2]));
      for (const b of this.blocks) t = b.apply(t);
      const out = this.norm.apply(t);
      return out.slice([0, 0, 0], [n, 1, d]).reshape([n, d]) as tf.Tensor2D;
    });
  }

  /** The position embedding [1, 1 + h0 * w0, D] for an h x w input (resampled when its grid differs). */
  private positions(h: number, w: number): tf.Tensor3D {
    const [h0, w0] = viewGrid(h, w, this.options.patchSize);
    const [gh, gw] = this.grid;
    const pos = this.pos as tf.Tensor3D;
    if (h0 === gh && w0 === gw) return pos;
    const key = `${h0}x${w0}`;
    let m = this.resample.get(key);
    if (m === undefined) {
      m = positionResampleMatrix(gh, gw, h0, w0);
      this.resample.set(key, m);
    }
    const d = this.options.embedDim;
    const patchPos = pos.slice([0, 1, 0], [1, gh * gw, d]).reshape([gh * gw, d]) as tf.Tensor2D;
    const resampled = tf.matMul(tf.tensor2d(m, [h0 * w0, gh * gw]), patchPos);
    return tf.concat([pos.slice([0, 0, 0], [1, 1, d]), resampled.expandDims(0)], 1) as tf.Tensor3D;
  }
}

/** Sizes of a view's patch grid, refusing a side the patch does not divide. */
function viewGrid(h: number, w: number, p: number): [number, number] {
  if (h % p !== 0 || w % p !== 0) {
    throw new ConfigError(
      'model.patchSize',
      `${p} does not divide a ${h}x${w} view into whole patches`,
      { hint: `give every view (data.views[].crop.size) a multiple of ${p} as its size` },
    );
  }
  return [h / p, w / p];
}

function checkSizes(o: VitOptions, input: { height: number; width: number }): void {
  const p = o.patchSize;
  if (input.height % p !== 0 || input.width % p !== 0) {
    const divisors = Array.from({ length: input.height }, (_, i) => i + 1).filter(
      (k) => input.height % k === 0 && input.width % k === 0 && k < input.height,
    );
    throw new ConfigError(
      'model.patchSize',
      `${p} does not divide the ${input.height}x${input.width} input into whole patches`,
      { hint: `use one of: ${divisors.join(', ')} (or crop the images to a multiple of ${p})` },
    );
  }
  if (o.embedDim % o.heads !== 0) {
    throw new ConfigError('model.heads', `${o.heads} heads do not divide embedDim ${o.embedDim}`, {
      hint: `use a divisor of ${o.embedDim} (ViT-Tiny: 192 / 3, ViT-Small: 384 / 6)`,
    });
  }
  if (o.init === 'moco-v3' && o.embedDim % 4 !== 0) {
    throw new ConfigError(
      'model.embedDim',
      'the sin-cos position embedding needs embedDim % 4 = 0',
      {
        hint: `use a multiple of 4 (got ${o.embedDim}) or init: timm`,
      },
    );
  }
}
