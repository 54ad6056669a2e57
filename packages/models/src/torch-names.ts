import { ConfigError } from '@contrast/core';

/**
 * Contrast variable names and layouts <-> PyTorch state_dict names and layouts.
 *
 * ResNets map to torchvision's `resnet18/34/50` state_dict (torchvision/models/resnet.py):
 * `stem/conv` -> `conv1`, `stem/bn` -> `bn1`, `layer<s>/<i>/conv<k>` -> `layer<s>.<i>.conv<k>`,
 * `layer<s>/<i>/shortcut/{conv,bn}` -> `layer<s>.<i>.downsample.{0,1}`. The projection head
 * maps to `fc` (linear, MoCo v1's replaced fc) or `fc.0` / `fc.2` (MoCo v2's
 * `nn.Sequential(nn.Linear, nn.ReLU, nn.Linear)`).
 *
 * The ConvNet maps to its own documented layout, `nn.Sequential(OrderedDict(features=...,
 * fc=...))` where `features` is `Conv2d(3x3, pad 1, no bias), BatchNorm2d, ReLU, MaxPool2d(2)`
 * twice, then `Conv2d, BatchNorm2d, ReLU, AdaptiveAvgPool2d(1), Flatten()`:
 * `conv<k>` -> `features.<4(k-1)>`, `bn<k>` -> `features.<4(k-1)+1>`.
 *
 * Parameters: conv `w` [kh, kw, in, out] (HWIO) -> `weight` [out, in, kh, kw] (OIHW); linear
 * `w` [in, out] -> `weight` [out, in], `b` -> `bias`; BN `gamma` -> `weight`, `beta` -> `bias`,
 * `running_mean` and `running_var` unchanged. PyTorch's BN also carries an int64
 * `num_batches_tracked` scalar, which Contrast does not keep (see `torchStateDict`).
 */

/** A tensor on the host: row-major data and its shape. */
export interface HostTensor {
  data: Float32Array;
  shape: number[];
}

/** A state_dict entry: float32 (safetensors `F32`) or int64 (`I64`, BN's num_batches_tracked). */
export type TorchTensor =
  | { dtype: 'F32'; shape: number[]; data: Float32Array }
  | { dtype: 'I64'; shape: number[]; data: BigInt64Array };

const PARAM_TO_TORCH: Record<string, string> = {
  w: 'weight',
  b: 'bias',
  gamma: 'weight',
  beta: 'bias',
  running_mean: 'running_mean',
  running_var: 'running_var',
};

const HEAD_TO_TORCH: Record<string, string> = { fc: 'fc', fc1: 'fc.0', fc2: 'fc.2' };

function splitName(name: string): { module: string[]; param: string } {
  const parts = name.split('/');
  const param = parts.pop()!;
  return { module: parts, param };
}

function unknown(encoder: string, name: string): ConfigError {
  return new ConfigError('model.encoder', `no PyTorch name for ${encoder} variable '${name}'`, {
    hint: 'torch export supports resnet18/34/50 and convnet with linear or mlp heads',
  });
}

/** The torch module path of a Contrast module path (without the parameter). */
function torchModule(encoder: string, module: string[], name: string): string {
  const [first, ...rest] = module;
  if (first === 'head' && rest.length === 1 && HEAD_TO_TORCH[rest[0]!]) {
    return HEAD_TO_TORCH[rest[0]!]!;
  }
  if (encoder === 'convnet') {
    const m = /^(conv|bn)([123])$/.exec(module.join('/'));
    if (!m) throw unknown(encoder, name);
    return `features.${4 * (Number(m[2]) - 1) + (m[1] === 'bn' ? 1 : 0)}`;
  }
  if (first === 'stem' && rest.length === 1) {
    if (rest[0] === 'conv') return 'conv1';
    if (rest[0] === 'bn') return 'bn1';
  }
  if (/^layer[1-4]$/.test(first ?? '') && rest.length >= 2 && /^\d+$/.test(rest[0]!)) {
    const block = `${first}.${rest[0]}`;
    const inner = rest.slice(1).join('/');
    if (/^(conv|bn)[123]$/.test(inner)) return `${block}.${inner}`;
    if (inner === 'shortcut/conv') return `${block}.downsample.0`;
    if (inner === 'shortcut/bn') return `${block}.downsample.1`;
  }
  throw unknown(encoder, name);
}

/**
 * The PyTorch state_dict name of a Contrast variable, e.g. for a ResNet
 * `layer2/0/shortcut/bn/gamma` -> `layer2.0.downsample.1.weight`.
 * @throws ConfigError for a name outside the layouts above.
 */
export function torchName(encoder: string, name: string): string {
  const { module, param } = splitName(name);
  const p = PARAM_TO_TORCH[param];
  if (!p) throw unknown(encoder, name);
  return `${torchModule(encoder, module, name)}.${p}`;
}

/** [kh, kw, in, out] -> [out, in, kh, kw], or [in, out] -> [out, in]; 1-D unchanged. */
export function toTorchLayout(t: HostTensor): HostTensor {
  if (t.shape.length === 4) return permute(t, [3, 2, 0, 1]);
  if (t.shape.length === 2) return permute(t, [1, 0]);
  return { data: t.data, shape: [...t.shape] };
}

/** The inverse of `toTorchLayout`: [out, in, kh, kw] -> [kh, kw, in, out], [out, in] -> [in, out]. */
export function fromTorchLayout(t: HostTensor): HostTensor {
  if (t.shape.length === 4) return permute(t, [2, 3, 1, 0]);
  if (t.shape.length === 2) return permute(t, [1, 0]);
  return { data: t.data, shape: [...t.shape] };
}

/** out[i_perm] = in[i]: the axes of `t` reordered so that new axis j is old axis perm[j]. */
function permute(t: HostTensor, perm: number[]): HostTensor {
  const shape = perm.map((a) => t.shape[a]!);
  const inStrides = t.shape.map((_, a) => t.shape.slice(a + 1).reduce((p, d) => p * d, 1));
  const out = new Float32Array(t.data.length);
  const idx = new Array<number>(shape.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let j = 0; j < shape.length; j++) src += idx[j]! * inStrides[perm[j]!]!;
    out[o] = t.data[src]!;
    for (let j = shape.length - 1; j >= 0; j--) {
      if (++idx[j]! < shape[j]!) break;
      idx[j] = 0;
    }
  }
  return { data: out, shape };
}

/**
 * A whole PyTorch state_dict from Contrast's named variables: every name mapped
 * by `torchName`, every tensor by `toTorchLayout`, plus `num_batches_tracked`
 * (int64 scalar, `numBatchesTracked`) beside each BN's running statistics so a
 * strict `load_state_dict` finds every key torchvision's BatchNorm2d has.
 * Entries keep the order of `named`.
 * @throws ConfigError for a name outside the supported layouts.
 */
export function torchStateDict(
  encoder: string,
  named: ReadonlyMap<string, HostTensor>,
  numBatchesTracked = 0,
): Map<string, TorchTensor> {
  const out = new Map<string, TorchTensor>();
  for (const [name, t] of named) {
    const key = torchName(encoder, name);
    const { data, shape } = toTorchLayout(t);
    out.set(key, { dtype: 'F32', data, shape });
    if (name.endsWith('/running_var')) {
      const nbt = key.replace(/running_var$/, 'num_batches_tracked');
      out.set(nbt, { dtype: 'I64', data: BigInt64Array.of(BigInt(numBatchesTracked)), shape: [] });
    }
  }
  return out;
}
