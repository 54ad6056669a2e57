import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ConfigError,
  type Encoder,
  type ExperimentConfig,
  type TrainingDataset,
} from '@contrast/core';
import { ContrastEncoder, RESNETS, VitBackbone } from '@contrast/models';
import type { InputSpec } from './pixels.js';

/** Version tag of `encoder.json`. */
export const SIDECAR_FORMAT = 'contrast-encoder/1';

/**
 * `encoder.json`, written beside every export: what a user elsewhere needs to
 * feed the encoder and to know what it is.
 */
export interface EncoderSidecar {
  format: typeof SIDECAR_FORMAT;
  architecture: {
    encoder: string;
    /** ResNets: 'cifar' = 3x3 stride-1 conv, no max-pool; 'imagenet' = 7x7 stride 2 + 3x3 max-pool. */
    stem?: 'cifar' | 'imagenet';
    block?: 'basic' | 'bottleneck';
    /** Width multiplier: stage widths 64 * width * [1, 2, 4, 8] (ConvNet: 32 * width * [1, 2, 4]). */
    width?: number;
    /** ViTs: timm VisionTransformer's sizes (patch_size, embed_dim, depth, num_heads, mlp_ratio). */
    vit?: { patchSize: number; embedDim: number; depth: number; heads: number; mlpRatio: number };
  };
  input: {
    height: number;
    width: number;
    channels: number;
    /** x = (pixels / 255 - mean) / std per channel. */
    mean: number[];
    std: number[];
    /** How image files are brought to height x width (as training decodes image folders). */
    resize: string;
  };
  features: { dim: number; layer: string; batchNorm: string };
  projection: {
    /** As model.head: 'linear', 'mlp' (Linear-ReLU-Linear) or 'mlp-bn' (Linear-BN-ReLU ... Linear). */
    head: 'linear' | 'mlp' | 'mlp-bn';
    dim: number;
    hiddenDim?: number;
    /** Linear layers of an MLP head. */
    layers?: number;
    /** An affine-free BN on the head's output ('mlp-bn' only: SimSiam's projector). */
    outputBn?: boolean;
    included: boolean;
    normalization: string;
  };
  /** The run the encoder comes from (absent for an encoder exported outside a run). */
  training?: {
    run: string;
    name: string;
    strategy: string;
    dataset: { name: string; digest?: string };
    /** Which weights: the run's final state or its newest checkpoint. */
    weights: string;
    steps?: number;
    epochs?: number;
    /** The query encoder (MoCo evaluates encoder_q), not the momentum key encoder. */
    encoder: string;
  };
  results: Record<string, { value: number; protocol: Record<string, unknown> }>;
  /** Files of the export, relative to the folder holding encoder.json. */
  files: Record<string, string>;
  exported: string;
}

/** The ContrastEncoder inside an encoder that wraps one (e.g. a predictor on top). */
export function backboneEncoder(encoder: Encoder): ContrastEncoder {
  let e: unknown = encoder;
  while (e && !(e instanceof ContrastEncoder)) e = (e as { base?: unknown }).base;
  if (!e) {
    throw new ConfigError('model.encoder', `cannot export a '${encoder.name}' encoder`, {
      hint: 'export supports the built-in ResNets, ConvNet and ViTs (and plugin encoders built with encoderEntry)',
    });
  }
  return e as ContrastEncoder;
}

function readJson(path: string): Record<string, unknown> {
  return existsSync(path)
    ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>)
    : {};
}

/** kNN and linear-probe results recorded in the run, with the protocol that produced each. */
function runResults(runPath: string, config: ExperimentConfig): EncoderSidecar['results'] {
  const summary = readJson(join(runPath, 'summary.json'));
  const evals = (summary.eval_results ?? {}) as Record<string, Record<string, number>>;
  const out: EncoderSidecar['results'] = {};
  const features = 'pooled backbone features, BN in eval mode, final weights';
  const { k, t, bankSize, testSize } = config.eval.knn;
  const knn = evals.knn;
  const trained = (summary.knn as { trained?: number } | undefined)?.trained;
  if (knn?.knn_accuracy !== undefined) {
    out.knn_top1 = {
      value: knn.knn_accuracy,
      protocol: {
        k,
        t,
        features,
        bank: `train split (${knn.bank_size})`,
        test: `test split (${knn.test_size})`,
      },
    };
  } else if (typeof trained === 'number') {
    out.knn_top1 = {
      value: trained,
      protocol: {
        k,
        t,
        features,
        bank: bankSize ? `first ${bankSize} train` : 'train split',
        test: testSize ? `first ${testSize} test` : 'test split',
      },
    };
  }
  const lin = evals.linear;
  if (lin?.linear_top1 !== undefined) {
    const protocol = {
      features,
      classifier: 'linear, SGD momentum 0.9, wd 0, lr x0.1 at 60% and 80% (MoCo)',
      ...(lin.linear_lr !== undefined ? { lr: lin.linear_lr } : {}),
      epochs: lin.epochs,
      train_size: lin.train_size,
    };
    out.linear_top1 = { value: lin.linear_top1, protocol };
    if (lin.linear_top5 !== undefined) out.linear_top5 = { value: lin.linear_top5, protocol };
  }
  return out;
}

/**
 * What the encoder itself determines: architecture, input (size, channels,
 * normalisation), feature and projection widths. `training` and `results` are
 * left for `buildSidecar`.
 */
export function encoderSidecar(
  encoder: ContrastEncoder,
  input: InputSpec,
  includeHead: boolean,
): EncoderSidecar {
  const model = encoder.spec.model;
  const resnet = model.encoder in RESNETS;
  const vit = encoder.backboneOf(VitBackbone)?.options;
  const width = model.width as number | undefined;
  return {
    format: SIDECAR_FORMAT,
    architecture: {
      encoder: model.encoder,
      ...(resnet
        ? {
            stem: model.stem as 'cifar' | 'imagenet',
            block: RESNETS[model.encoder as keyof typeof RESNETS].block,
          }
        : {}),
      ...(width !== undefined ? { width } : {}),
      ...(vit
        ? {
            vit: {
              patchSize: vit.patchSize,
              embedDim: vit.embedDim,
              depth: vit.depth,
              heads: vit.heads,
              mlpRatio: vit.mlpRatio,
            },
          }
        : {}),
    },
    input: {
      height: input.height,
      width: input.width,
      channels: input.channels,
      mean: [...input.mean],
      std: [...input.std],
      resize:
        'decode to RGB, bilinear resize to height x width (half-pixel centres, no antialiasing), round to uint8; 1 channel: then grey as tf.image.rgbToGrayscale (0.2989, 0.587, 0.114), rounded',
    },
    features: {
      dim: encoder.featureDim,
      layer: vit
        ? 'the class token after the final LayerNorm (epsilon 1e-6)'
        : resnet
          ? 'global average pool after layer4'
          : 'global average pool after conv3-bn3-relu',
      batchNorm: vit
        ? 'none in the backbone'
        : 'eval mode: running statistics, epsilon 1e-5 (not folded into the convolutions)',
    },
    projection: {
      head: model.head,
      dim: model.dim,
      ...(model.head !== 'linear'
        ? { hiddenDim: model.hiddenDim || encoder.featureDim, layers: model.headLayers }
        : {}),
      ...(model.head === 'mlp-bn' ? { outputBn: model.headOutputBn } : {}),
      included: includeHead,
      normalization: 'the training embedding is projection / ||projection||_2',
    },
    results: {},
    files: {},
    exported: new Date().toISOString(),
  };
}

/**
 * The sidecar of a run's encoder: `encoderSidecar` (input normalisation from
 * the run's dataset) plus the run and its kNN / linear results with their protocols.
 */
export function buildSidecar(opts: {
  runPath: string;
  config: ExperimentConfig;
  dataset: TrainingDataset;
  encoder: ContrastEncoder;
  weights: string;
  includeHead: boolean;
}): EncoderSidecar {
  const { runPath, config, dataset } = opts;
  const summary = readJson(join(runPath, 'summary.json'));
  return {
    ...encoderSidecar(opts.encoder, dataset, opts.includeHead),
    training: {
      run: runPath,
      name: config.name,
      strategy: config.strategy.name,
      dataset: { name: dataset.name, ...(dataset.digest ? { digest: dataset.digest } : {}) },
      weights: opts.weights,
      ...(typeof summary.steps === 'number' ? { steps: summary.steps } : {}),
      ...(typeof summary.epochs === 'number' ? { epochs: summary.epochs } : {}),
      encoder: 'query encoder',
    },
    results: runResults(runPath, config),
  };
}
