import * as tf from '@tensorflow/tfjs';
import { loadFashionMnist, splitBatch } from '@contrast/data';
import { hasTorchEntry, type ContrastEncoder } from '@contrast/models';

/**
 * Gives every BatchNorm non-trivial values (gamma U[0.5, 1.5], beta U[-0.3, 0.3],
 * running mean U[-0.5, 0.5], running variance U[0.5, 2]), seeded, so an export
 * check on a freshly initialised encoder exercises the running statistics
 * (at initialisation they are 0 and 1 and would hide a swapped mean / variance).
 * An affine-free BN keeps its fixed scale 1 and offset 0.
 */
export function randomizeBatchNorm(encoder: ContrastEncoder, seed: number): void {
  const ranges: [string, number, number][] = [
    ['/gamma', 0.5, 1.5],
    ['/beta', -0.3, 0.3],
    ['/running_mean', -0.5, 0.5],
    ['/running_var', 0.5, 2],
  ];
  let i = 0;
  for (const [name, v] of encoder.namedVariables()) {
    const r = ranges.find(([suffix]) => name.endsWith(suffix));
    if (!r || !hasTorchEntry(name)) continue;
    tf.tidy(() => v.assign(tf.randomUniform(v.shape, r[1], r[2], 'float32', seed + i++)));
  }
}

/** The largest |a - b| over two equally shaped tensors. */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

/**
 * The encoders export parity is checked on (tfjs in `layers-model.test.ts`, torch
 * in `torch-export.test.ts` and `pnpm export-parity`): every built-in backbone
 * (models' ENCODER_NAMES), both ResNet stems, every head. The ConvNet with MoCo
 * v1's linear head (the default experiment's encoder); ResNet-18 with the CIFAR
 * stem (1 channel) and with the ImageNet stem at full width (torchvision's
 * resnet18 unchanged); ResNet-34 with the CIFAR stem on 3 channels and BYOL's
 * projector (`mlp-bn`); ResNet-50 (bottlenecks) with MoCo v2's MLP head; the
 * ConvNet with SimSiam's projector (3 layers of Linear-BN-ReLU ... Linear, an
 * affine-free output BN); a small ViT (patch 7 on 28x28, 2 blocks) with MoCo v2's
 * MLP head, and the ViT-Tiny and ViT-Small presets cut to one block on 56x56x3
 * (patch 14) with a linear head. The tf.layers export has no ViT
 * (`TFJS_PARITY_ENCODERS` leaves them out).
 */
export const PARITY_ENCODERS = [
  { encoder: 'convnet', width: 0.5, channels: 1 },
  { encoder: 'resnet18', stem: 'cifar', width: 0.25, channels: 1 },
  { encoder: 'resnet18', stem: 'imagenet', width: 1, channels: 3 },
  { encoder: 'resnet34', stem: 'cifar', width: 0.125, channels: 3, head: 'mlp-bn', hiddenDim: 24 },
  { encoder: 'resnet50', stem: 'imagenet', width: 0.25, channels: 3, head: 'mlp' },
  {
    encoder: 'convnet',
    width: 0.5,
    channels: 1,
    head: 'mlp-bn',
    headLayers: 3,
    hiddenDim: 32,
    headOutputBn: true,
  },
  { encoder: 'vit', patchSize: 7, embedDim: 32, depth: 2, heads: 2, channels: 1, head: 'mlp' },
  { encoder: 'vit-tiny', patchSize: 14, depth: 1, channels: 3 },
  { encoder: 'vit-small', patchSize: 14, depth: 1, channels: 3 },
] as const;

/** The PARITY_ENCODERS the tf.layers export can express (every one but the ViTs). */
export const TFJS_PARITY_ENCODERS = PARITY_ENCODERS.filter((e) => !e.encoder.startsWith('vit'));

/** A name for a PARITY_ENCODERS entry: encoder, stem, head. */
export function parityLabel(entry: (typeof PARITY_ENCODERS)[number]): string {
  return (
    `${entry.encoder}${'stem' in entry ? ` ${entry.stem} stem` : ''}` +
    `${'patchSize' in entry ? ` patch ${entry.patchSize}, depth ${entry.depth}` : ''}` +
    `${'head' in entry ? `, ${entry.head} head` : ''}`
  );
}

/**
 * The first `count` (default 256) normalised Fashion-MNIST test images
 * [count, 28, 28, 1]; for 3-channel encoders resized to 56x56 with a different
 * tint per channel (so a channel mix-up shows).
 */
export function parityImages(channels: 1 | 3, count = 256): tf.Tensor4D {
  const ds = loadFashionMnist();
  return tf.tidy(() => {
    const x = splitBatch(ds, ds.test, 0, count);
    if (channels === 1) return x;
    const big = tf.image.resizeBilinear(x, [56, 56], false, true);
    return tf.concat([big, tf.mul(big, 0.5), tf.sub(0.2, big)], 3) as tf.Tensor4D;
  });
}
