import { StateError } from '@contrast/core';

/**
 * Contrast <-> PyTorch state_dict: names and layouts. Names follow torchvision's
 * ResNet (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0` / `.1`, `fc`),
 * the ConvNet's `convK` / `bnK`, timm's VisionTransformer (`cls_token`,
 * `pos_embed`, `patch_embed.proj`, `blocks.0.attn.qkv`, `norm`; its projection
 * head is timm's `head` rather than `fc`: HeadLayout.headModule), and the heads as PyTorch Sequential indices: the
 * projection head `fc` is MoCo v1's Linear, MoCo v2's Sequential(Linear, ReLU,
 * Linear, ...) (`fc.0`, `fc.2`, ...) or, for an 'mlp-bn' head (BYOL, SimSiam),
 * Sequential(Linear, BN, ReLU, ..., Linear[, BN]) (`fc.0`, `fc.1`, `fc.3`, ...,
 * the output BN last); the predictor (BYOL, SimSiam, MoCo v3) is
 * Sequential(Linear, BN, ReLU, Linear) as `predictor.0` / `.1` / `.3`. Layouts:
 * conv filters HWIO -> OIHW, linear weights [in, out] -> [out, in] (nn.Linear's),
 * BN gamma/beta -> weight/bias with the running statistics as they are. Images
 * go NHWC -> NCHW (`nhwcToNchw`). torchvision's BatchNorm also has
 * `num_batches_tracked` (int64), which Contrast does not keep: `torchStateDict`
 * adds it. An affine-free BN (SimSiam's output BN, `head/bn_out`) has no weight
 * or bias in PyTorch: Contrast's fixed scale 1 / offset 0 are left out.
 */

/** One entry of a PyTorch state_dict, C-order data. */
export interface TorchTensor {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int64';
  data: Float32Array | BigInt64Array;
}

const BN_FIELDS: Record<string, string> = {
  gamma: 'weight',
  beta: 'bias',
  running_mean: 'running_mean',
  running_var: 'running_var',
};
/** Linear weights and biases; `v` is a weight-normalised layer's direction (DINO's last layer). */
const LINEAR_FIELDS: Record<string, string> = { w: 'weight', b: 'bias', v: 'weight_v' };
const BN_FIELDS_BACK = Object.fromEntries(Object.entries(BN_FIELDS).map(([k, v]) => [v, k]));

/**
 * Module paths: [Contrast pattern, torch name, torch pattern, Contrast name],
 * for the ResNet backbone, the ConvNet, and the heads and predictor.
 */
type Rule = [RegExp, string, RegExp, string];
const RESNET: Rule[] = [
  [/^stem\/conv$/, 'conv1', /^conv1$/, 'stem/conv'],
  [/^stem\/bn$/, 'bn1', /^bn1$/, 'stem/bn'],
  [
    /^layer(\d+)\/(\d+)\/shortcut\/conv$/,
    'layer$1.$2.downsample.0',
    /^layer(\d+)\.(\d+)\.downsample\.0$/,
    'layer$1/$2/shortcut/conv',
  ],
  [
    /^layer(\d+)\/(\d+)\/shortcut\/bn$/,
    'layer$1.$2.downsample.1',
    /^layer(\d+)\.(\d+)\.downsample\.1$/,
    'layer$1/$2/shortcut/bn',
  ],
  [
    /^layer(\d+)\/(\d+)\/(conv\d|bn\d)$/,
    'layer$1.$2.$3',
    /^layer(\d+)\.(\d+)\.(conv\d|bn\d)$/,
    'layer$1/$2/$3',
  ],
];
const CONVNET: Rule[] = [[/^(conv\d|bn\d)$/, '$1', /^(conv\d|bn\d)$/, '$1']];
/** timm's VisionTransformer: Contrast's ViT variables are its module paths with `/`. */
const VIT: Rule[] = [
  [/^patch_embed\/proj$/, 'patch_embed.proj', /^patch_embed\.proj$/, 'patch_embed/proj'],
  [
    /^blocks\/(\d+)\/(norm1|norm2)$/,
    'blocks.$1.$2',
    /^blocks\.(\d+)\.(norm1|norm2)$/,
    'blocks/$1/$2',
  ],
  [
    /^blocks\/(\d+)\/(attn|mlp)\/(qkv|proj|fc1|fc2)$/,
    'blocks.$1.$2.$3',
    /^blocks\.(\d+)\.(attn|mlp)\.(qkv|proj|fc1|fc2)$/,
    'blocks/$1/$2/$3',
  ],
  [/^norm$/, 'norm', /^norm$/, 'norm'],
];
/** Whole tensors of timm's VisionTransformer, named alike on both sides. */
const VIT_TENSORS = new Set(['cls_token', 'pos_embed']);
/** Method parts beside the encoder: SwAV's prototypes (main_swav.py's `prototypes`, a Linear without bias). */
const METHOD_PARTS: Rule[] = [[/^prototypes$/, 'prototypes', /^prototypes$/, 'prototypes']];

/**
 * How the projection head is laid out, as the model config says (`model.head`,
 * `model.headLayers`): it decides the Sequential index of each layer. Absent:
 * a linear head or MoCo v2's MLP (Linear-ReLU-Linear).
 */
export interface HeadLayout {
  head?: 'linear' | 'mlp' | 'mlp-bn';
  /** Linear layers of an MLP head (2 unless told). */
  headLayers?: number;
}

/** A HeadLayout and where the projection head sits in the torch model. */
export interface TorchLayout extends HeadLayout {
  /** The projection head's torch module: `fc` (torchvision's ResNet, default) or `head` (timm's ViT). */
  headModule?: 'fc' | 'head';
}

/** Contrast's head prefixes and their torch modules; the predictor is always Linear-BN-ReLU-Linear. */
const HEAD_MODULES: Record<string, string> = { head: 'fc', predictor: 'predictor' };
const PREDICTOR: Required<HeadLayout> = { head: 'mlp-bn', headLayers: 2 };

/** Sequential positions per linear layer: Linear-ReLU (2) or Linear-BN-ReLU (3). */
const stride = (l: Required<HeadLayout>) => (l.head === 'mlp-bn' ? 3 : 2);
const fullLayout = (prefix: string, l?: HeadLayout): Required<HeadLayout> =>
  prefix === 'predictor' ? PREDICTOR : { head: l?.head ?? 'mlp', headLayers: l?.headLayers ?? 2 };

/**
 * `head/fc2` -> `fc.2` (MLP) or `fc.3` (MLP with BN), `head/bn1` -> `fc.1`,
 * `head/bn_out` -> the position after the last Linear; undefined outside the heads.
 */
function headToTorch(path: string, layout?: TorchLayout): string | undefined {
  const m = /^(head|predictor)\/(fc|bn)(\d+|_out)?$/.exec(path);
  if (!m) return undefined;
  const [, prefix, kind, k] = m as unknown as [string, string, string, string | undefined];
  const module = prefix === 'head' ? (layout?.headModule ?? 'fc') : HEAD_MODULES[prefix]!;
  if (k === undefined) return kind === 'fc' ? module : undefined; // MoCo v1's single Linear
  const l = fullLayout(prefix, layout);
  if (kind === 'bn' && l.head !== 'mlp-bn') return undefined;
  if (k === '_out') return kind === 'bn' ? `${module}.${3 * (l.headLayers - 1) + 1}` : undefined;
  const at = stride(l) * (Number(k) - 1);
  return `${module}.${kind === 'fc' ? at : at + 1}`;
}

/** The inverse of headToTorch: `fc.3` -> `head/fc2` (MLP with BN), `predictor.1` -> `predictor/bn1`. */
function headFromTorch(path: string, layout?: TorchLayout): string | undefined {
  const m = /^(fc|head|predictor)(?:\.(\d+))?$/.exec(path);
  if (!m || (m[1] !== 'predictor' && m[1] !== (layout?.headModule ?? 'fc'))) return undefined;
  const prefix = m[1] === 'predictor' ? 'predictor' : 'head';
  if (m[2] === undefined) return prefix === 'head' ? 'head/fc' : undefined;
  const l = fullLayout(prefix, layout);
  const i = Number(m[2]);
  const s = stride(l);
  if (i % s === 0) return `${prefix}/fc${i / s + 1}`;
  if (s === 3 && i % 3 === 1) {
    return i === 3 * (l.headLayers - 1) + 1 ? `${prefix}/bn_out` : `${prefix}/bn${(i - 1) / 3 + 1}`;
  }
  return undefined;
}

/**
 * DINO's head as main_dino.py's DINOHead (layers >= 2): `dino_head/fc<i>` is
 * `dino_head.mlp.<2(i - 1)>` (Sequential of Linear, GELU, ...), `dino_head/last` the
 * weight-normalised `dino_head.last_layer`, whose V is `weight_v` (g is fixed to 1).
 */
function dinoHeadToTorch(path: string): string | undefined {
  const m = /^dino_head\/fc(\d+)$/.exec(path);
  if (m) return `dino_head.mlp.${2 * (Number(m[1]) - 1)}`;
  return path === 'dino_head/last' ? 'dino_head.last_layer' : undefined;
}

/** The inverse of dinoHeadToTorch. */
function dinoHeadFromTorch(path: string): string | undefined {
  const m = /^dino_head\.mlp\.(\d+)$/.exec(path);
  if (m && Number(m[1]) % 2 === 0) return `dino_head/fc${Number(m[1]) / 2 + 1}`;
  return path === 'dino_head.last_layer' ? 'dino_head/last' : undefined;
}

/** Rewrites `path` by the first rule that matches it, towards torch or back to Contrast. */
function mapModule(path: string, rules: Rule[], back = false): string | undefined {
  for (const [c, t, tRe, cName] of rules) {
    const [re, to] = back ? [tRe, cName] : [c, t];
    if (re.test(path)) return path.replace(re, to);
  }
  return undefined;
}

function unknown(name: string, direction: string): StateError {
  return new StateError(`no ${direction} name for the variable '${name}'`, {
    hint:
      'only ResNet / ConvNet encoders, their linear / MLP / MLP-with-BN heads (give the head layout for ' +
      "'mlp-bn': { head, headLayers } as in model) and the predictor map to torchvision names",
  });
}

/**
 * Whether PyTorch stores a Contrast variable: an affine-free BN's fixed scale and
 * offset (`head/bn_out/gamma`, `/beta`: BatchNorm1d(affine=False)) have no entry.
 */
export function hasTorchEntry(name: string): boolean {
  return !/\/bn_out\/(gamma|beta)$/.test(name);
}

/**
 * The torchvision state_dict name of a Contrast variable:
 * `layer2/0/shortcut/bn/gamma` -> `layer2.0.downsample.1.weight`; head names
 * follow `layout` (the model's `head` / `headLayers`): `head/fc2/w` is `fc.2.weight`
 * in an MLP, `fc.3.weight` in an MLP with BN. Throws a StateError for a name
 * outside the mapping (and for an affine-free BN's scale or offset, see hasTorchEntry).
 */
export function torchName(name: string, layout?: TorchLayout): string {
  if (VIT_TENSORS.has(name)) return name;
  const cut = name.lastIndexOf('/');
  const [module, leaf] = [name.slice(0, cut), name.slice(cut + 1)];
  const field = LINEAR_FIELDS[leaf] ?? BN_FIELDS[leaf];
  const path =
    mapModule(module, [...RESNET, ...CONVNET, ...VIT, ...METHOD_PARTS]) ??
    headToTorch(module, layout) ??
    dinoHeadToTorch(module);
  if (!field || path === undefined || !hasTorchEntry(name)) throw unknown(name, 'torchvision');
  return `${path}.${field}`;
}

/**
 * The Contrast variable name of a torchvision state_dict entry (the inverse of
 * torchName; `num_batches_tracked` has none). `resnet` tells the ResNet stem
 * (`conv1` -> `stem/conv`) from the ConvNet's first layer (`conv1` -> `conv1`);
 * the head layout reads `fc.<i>` as torchName writes it.
 */
export function contrastName(name: string, options: { resnet: boolean } & TorchLayout): string {
  if (VIT_TENSORS.has(name)) return name;
  const cut = name.lastIndexOf('.');
  const [module, field] = [name.slice(0, cut), name.slice(cut + 1)];
  const path =
    mapModule(module, [...(options.resnet ? RESNET : CONVNET), ...VIT, ...METHOD_PARTS], true) ??
    headFromTorch(module, options) ??
    dinoHeadFromTorch(module);
  const isBn = path !== undefined && /(^|\/)bn(\d*|_out)$/.test(path);
  const leaf = isBn
    ? BN_FIELDS_BACK[field]
    : ({ weight: 'w', bias: 'b', weight_v: 'v' } as const)[field as 'weight'];
  if (path === undefined || !leaf) throw unknown(name, 'Contrast');
  return `${path}/${leaf}`;
}

/** Whether a rank-2 variable is a linear weight [in, out] (nn.Linear's is [out, in]). */
const isLinearWeight = (name: string) => name.endsWith('/w') || name.endsWith('/last/v');

/** The layout permutation of a variable: conv HWIO -> OIHW, linear [in, out] -> [out, in]. */
function torchAxes(name: string, rank: number): number[] | undefined {
  if (rank === 4) return [3, 2, 0, 1];
  if (rank === 2 && isLinearWeight(name)) return [1, 0];
  return undefined;
}

/** Transposes C-order `data` of `shape` by `axes` (out[i...] = in[i permuted]). */
export function transposeData<T extends Float32Array | Uint8Array>(
  data: T,
  shape: readonly number[],
  axes: readonly number[],
): { data: T; shape: number[] } {
  const outShape = axes.map((a) => shape[a]!);
  const rank = shape.length;
  const inStrides = new Array<number>(rank).fill(1);
  for (let d = rank - 2; d >= 0; d--) inStrides[d] = inStrides[d + 1]! * shape[d + 1]!;
  const strides = axes.map((a) => inStrides[a]!);
  const out = new (data.constructor as new (n: number) => T)(data.length);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < data.length; o++) {
    let src = 0;
    for (let d = 0; d < rank; d++) src += idx[d]! * strides[d]!;
    out[o] = data[src]!;
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d]! < outShape[d]!) break;
      idx[d] = 0;
    }
  }
  return { data: out, shape: outShape };
}

/**
 * A Contrast variable's value in PyTorch's layout under its torchvision name
 * (head names by `layout`, see torchName). `data` is the variable's C-order
 * float32 values in Contrast's layout.
 */
export function toTorchTensor(
  name: string,
  shape: readonly number[],
  data: Float32Array,
  layout?: TorchLayout,
): TorchTensor {
  const axes = torchAxes(name, shape.length);
  const t = axes ? transposeData(data, shape, axes) : { data, shape: [...shape] };
  return { name: torchName(name, layout), shape: t.shape, dtype: 'float32', data: t.data };
}

/** The inverse of toTorchTensor: a torch entry back in Contrast's layout under its name. */
export function fromTorchTensor(
  t: { name: string; shape: readonly number[]; data: Float32Array },
  options: { resnet: boolean } & TorchLayout,
): { name: string; shape: number[]; data: Float32Array } {
  const name = contrastName(t.name, options);
  const rank = t.shape.length;
  const axes = rank === 4 ? [2, 3, 1, 0] : rank === 2 && isLinearWeight(name) ? [1, 0] : undefined;
  const back = axes ? transposeData(t.data, t.shape, axes) : { data: t.data, shape: [...t.shape] };
  return { name, ...back };
}

/**
 * A torchvision-style state_dict of Contrast variables (e.g. an encoder's
 * namedVariables(), read to host): every variable renamed and transposed, and a
 * `num_batches_tracked` (int64, `numBatchesTracked`, default 0) for each BatchNorm;
 * head names by `layout` (the model's `head` / `headLayers`). An affine-free BN's
 * fixed scale and offset are left out (PyTorch has none). Order: the variables'
 * order, each BN's counter after its running_var.
 */
export function torchStateDict(
  variables: Iterable<
    readonly [string, { readonly shape: readonly number[]; readonly data: Float32Array }]
  >,
  options: { numBatchesTracked?: number; layout?: TorchLayout } = {},
): TorchTensor[] {
  const out: TorchTensor[] = [];
  for (const [name, v] of variables) {
    if (!hasTorchEntry(name)) continue;
    const t = toTorchTensor(name, v.shape, v.data, options.layout);
    out.push(t);
    if (name.endsWith('/running_var')) {
      out.push({
        name: t.name.replace(/running_var$/, 'num_batches_tracked'),
        shape: [],
        dtype: 'int64',
        data: BigInt64Array.from([BigInt(options.numBatchesTracked ?? 0)]),
      });
    }
  }
  return out;
}

/** NHWC image data -> NCHW (PyTorch's layout). */
export function nhwcToNchw<T extends Float32Array | Uint8Array>(
  data: T,
  shape: readonly [number, number, number, number],
): { data: T; shape: number[] } {
  return transposeData(data, shape, [0, 3, 1, 2]);
}
