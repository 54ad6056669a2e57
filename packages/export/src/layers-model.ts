import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, writeFileAtomic } from '@contrast/core';
import type { ArchNode } from '@contrast/models';

/** The tf.layers layer name of a Contrast variable prefix: `layer1/0/conv1` -> `layer1.0.conv1`. */
export const layerName = (prefix: string): string => prefix.replace(/\//g, '.');

interface Builder {
  named: ReadonlyMap<string, tf.Tensor>;
  /** Layers whose weights are set once the model exists. */
  pending: { layer: tf.layers.Layer; weights: tf.Tensor[] }[];
  count: number;
}

function variable(b: Builder, name: string): tf.Tensor {
  const v = b.named.get(name);
  if (!v) throw new ConfigError('export', `the encoder has no variable '${name}'`);
  return v;
}

function apply(
  b: Builder,
  layer: tf.layers.Layer,
  x: tf.SymbolicTensor,
  weights: tf.Tensor[] = [],
) {
  if (weights.length) b.pending.push({ layer, weights });
  return layer.apply(x) as tf.SymbolicTensor;
}

/** One ArchNode as tf.layers, mirroring how `apply(x, false)` computes it. */
function node(b: Builder, n: ArchNode, x: tf.SymbolicTensor, prev?: ArchNode): tf.SymbolicTensor {
  const id = () => b.count++;
  const padding = (p: number): [[number, number], [number, number]] => [
    [p, p],
    [p, p],
  ];
  switch (n.kind) {
    case 'conv': {
      const name = layerName(n.name);
      if (!n.same && n.pad > 0) {
        x = apply(b, tf.layers.zeroPadding2d({ padding: padding(n.pad), name: `${name}.pad` }), x);
      }
      const conv = tf.layers.conv2d({
        filters: n.filters,
        kernelSize: n.kernel,
        strides: n.stride,
        padding: n.same ? 'same' : 'valid',
        useBias: false,
        name,
      });
      return apply(b, conv, x, [variable(b, `${n.name}/w`)]);
    }
    case 'bn': {
      const bn = tf.layers.batchNormalization({
        axis: -1,
        epsilon: n.eps,
        name: layerName(n.name),
      });
      const w = ['gamma', 'beta', 'running_mean', 'running_var'].map((k) =>
        variable(b, `${n.name}/${k}`),
      );
      return apply(b, bn, x, w);
    }
    case 'relu':
      return apply(b, tf.layers.reLU({ name: `relu_${id()}` }), x);
    case 'maxpool': {
      const i = id();
      if (n.pad > 0) {
        // Contrast pads with -inf; after a ReLU every value is >= 0 and every window holds one,
        // so zero padding gives the same maxima
        if (prev?.kind !== 'relu') {
          throw new ConfigError('export', 'a padded max-pool is exported only after a ReLU');
        }
        x = apply(
          b,
          tf.layers.zeroPadding2d({ padding: padding(n.pad), name: `maxpool_${i}.pad` }),
          x,
        );
      }
      const pool = tf.layers.maxPooling2d({
        poolSize: n.size,
        strides: n.stride,
        padding: 'valid',
        name: `maxpool_${i}`,
      });
      return apply(b, pool, x);
    }
    case 'residual': {
      const main = chain(b, n.main, x);
      const short = n.shortcut.length ? chain(b, n.shortcut, x) : x;
      const i = id();
      const sum = tf.layers.add({ name: `add_${i}` }).apply([main, short]) as tf.SymbolicTensor;
      return apply(b, tf.layers.reLU({ name: `relu_${id()}` }), sum);
    }
    case 'pool':
      return apply(b, tf.layers.globalAveragePooling2d({ name: 'pool' }), x);
    case 'dense': {
      const dense = tf.layers.dense({ units: n.units, name: layerName(n.name) });
      return apply(b, dense, x, [variable(b, `${n.name}/w`), variable(b, `${n.name}/b`)]);
    }
    default:
      throw new ConfigError('export', `no tf.layers form for '${(n as { kind: string }).kind}'`);
  }
}

function chain(b: Builder, nodes: readonly ArchNode[], x: tf.SymbolicTensor): tf.SymbolicTensor {
  nodes.forEach((n, i) => {
    x = node(b, n, x, nodes[i - 1]);
  });
  return x;
}

/**
 * A tf.layers model computing an encoder's eval-mode forward from its
 * description (`ContrastEncoder.describe()`) and its named variables:
 * ZeroPadding2D + 'valid' Conv2D where Contrast pads explicitly (PyTorch's
 * symmetric padding), 'same' where it is symmetric anyway, BatchNormalization
 * with the same epsilon and the running statistics, ReLU, Add, MaxPooling2D,
 * GlobalAveragePooling2D. Input [N, H, W, C] normalised images; outputs the
 * pooled features [N, F] (`features`) and, with a head, the projection
 * [N, D] before L2 normalisation (`projection`). `tf.loadLayersModel` loads
 * what `saveLayersModel` writes, with no custom layers.
 * @throws ConfigError when a variable the description names is missing.
 */
export function buildLayersModel(
  arch: { backbone: readonly ArchNode[]; head?: readonly ArchNode[] },
  named: ReadonlyMap<string, tf.Tensor>,
  input: { height: number; width: number; channels: number },
  name = 'contrast_encoder',
): tf.LayersModel {
  const b: Builder = { named, pending: [], count: 0 };
  const x = tf.input({ shape: [input.height, input.width, input.channels], name: 'image' });
  const features = chain(b, arch.backbone, x);
  const outputs = [features];
  if (arch.head?.length) outputs.push(chain(b, arch.head, features));
  const model = tf.model({ inputs: x, outputs: outputs.length > 1 ? outputs : features, name });
  for (const { layer, weights } of b.pending) layer.setWeights(weights);
  return model;
}

/** The model's topology and weights as tfjs's IO layer sees them (for saving or inlining). */
export async function modelArtifacts(model: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return artifacts!;
}

/** The weight bytes of artifacts as one buffer. */
export function weightBytes(a: tf.io.ModelArtifacts): Uint8Array {
  const data = a.weightData;
  if (!data) return new Uint8Array(0);
  return new Uint8Array(tf.io.CompositeArrayBuffer.join(data));
}

/**
 * Writes `model.json` (format layers-model, one weights group) and
 * `weights.bin` into `dir`, each atomically: what `tf.loadLayersModel(url)`
 * loads over http(s) and, with tfjs-node, from `file://`.
 */
export async function saveLayersModel(
  model: tf.LayersModel,
  dir: string,
  metadata: Record<string, unknown> = {},
): Promise<{ modelJson: string; weights: string; bytes: number }> {
  const a = await modelArtifacts(model);
  mkdirSync(dir, { recursive: true });
  const weights = weightBytes(a);
  const json = {
    format: 'layers-model',
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
    convertedBy: 'contrast export',
    modelTopology: a.modelTopology,
    weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }],
    userDefinedMetadata: metadata,
  };
  writeFileAtomic(join(dir, 'weights.bin'), weights);
  writeFileAtomic(join(dir, 'model.json'), JSON.stringify(json));
  return {
    modelJson: join(dir, 'model.json'),
    weights: join(dir, 'weights.bin'),
    bytes: weights.length,
  };
}
