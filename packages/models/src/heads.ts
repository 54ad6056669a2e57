import * as tf from '@tensorflow/tfjs';
import type { Head, Rng } from '@contrast/core';
import { BatchNorm, Linear, type ArchNode } from './layers.js';
import { ParamStore } from './params.js';

/** How an MLP head is built: widths and where BN goes. */
export interface MlpOptions {
  /** Widths [in, hidden..., out]: dims.length - 1 linear layers. */
  dims: readonly number[];
  /** Linear-BN-ReLU for every hidden layer (BYOL, SimSiam) instead of Linear-ReLU (MoCo v2, SimCLR). */
  bn: boolean;
  /** BN without affine on the output (SimSiam's projector). */
  outputBn?: boolean;
}

/** BatchNorm on [N, C] features, through the 4-D fused kernel. */
function batchNorm1d(bn: BatchNorm, x: tf.Tensor2D, training: boolean): tf.Tensor2D {
  const [n, c] = x.shape;
  return bn.apply(x.reshape([n, 1, 1, c]), training).reshape([n, c]);
}

/**
 * Linear layers with ReLU (and optionally BN) between them, on a ParamStore:
 * one layer is MoCo v1's replaced fc (named `<prefix>/fc`); several are named
 * `<prefix>/fc1`, `<prefix>/bn1`, `<prefix>/fc2`, ... (`<prefix>/bn_out` for the output BN).
 *   [N, dims[0]] -> [N, dims[last]]
 */
export class MlpLayers {
  private readonly fcs: Linear[] = [];
  private readonly bns: BatchNorm[] = [];
  private readonly outBn: BatchNorm | undefined;

  constructor(store: ParamStore, prefix: string, options: MlpOptions) {
    const { dims } = options;
    const layers = dims.length - 1;
    for (let i = 0; i < layers; i++) {
      const name = layers === 1 ? `${prefix}/fc` : `${prefix}/fc${i + 1}`;
      this.fcs.push(new Linear(store, name, dims[i]!, dims[i + 1]!));
      if (options.bn && i < layers - 1) {
        this.bns.push(new BatchNorm(store, `${prefix}/bn${i + 1}`, dims[i + 1]!));
      }
    }
    this.outBn = options.outputBn
      ? new BatchNorm(store, `${prefix}/bn_out`, dims[layers]!, 0.1, 1e-5, false)
      : undefined;
  }

  apply(x: tf.Tensor2D, training: boolean): tf.Tensor2D {
    return tf.tidy(() => {
      let z = x;
      this.fcs.forEach((fc, i) => {
        z = fc.apply(z);
        if (i === this.fcs.length - 1) return;
        const bn = this.bns[i];
        z = tf.relu(bn ? batchNorm1d(bn, z, training) : z);
      });
      return this.outBn ? batchNorm1d(this.outBn, z, training) : z;
    });
  }

  /** The eval-mode layers as exporters see them: dense (-> BN) -> ReLU ..., dense (-> output BN). */
  describe(): ArchNode[] {
    const nodes: ArchNode[] = [];
    this.fcs.forEach((fc, i) => {
      nodes.push(fc.describe());
      if (i === this.fcs.length - 1) return;
      const bn = this.bns[i];
      if (bn) nodes.push(bn.describe());
      nodes.push({ kind: 'relu' });
    });
    if (this.outBn) nodes.push(this.outBn.describe());
    return nodes;
  }
}

/**
 * A head a method owns, with its own variables: BYOL's and SimSiam's predictor
 * (Linear-BN-ReLU-Linear), MoCo v3's. Initialised like PyTorch's nn.Linear; BN
 * scale 1, offset 0.
 */
export class MlpHead implements Head {
  readonly inDim: number;
  readonly outDim: number;
  private readonly store: ParamStore;
  private readonly layers: MlpLayers;

  constructor(
    readonly name: string,
    readonly options: MlpOptions,
    init: {
      rng?: Rng;
      source?: ReadonlyMap<string, tf.Tensor>;
      trainable?: boolean;
      /** BatchNorm groups in training mode (SplitBatchNorm; per-worker BN in data-parallel runs). */
      bnSplits?: number;
    },
  ) {
    this.inDim = options.dims[0]!;
    this.outDim = options.dims[options.dims.length - 1]!;
    this.store = new ParamStore(init.trainable ?? true, init.rng, init.source);
    this.store.bnSplits = init.bnSplits ?? 1;
    this.layers = new MlpLayers(this.store, name, options);
  }

  apply(x: tf.Tensor2D, training: boolean): tf.Tensor2D {
    return this.layers.apply(x, training);
  }

  parameters(): tf.Variable[] {
    return this.store.params;
  }

  namedVariables(): ReadonlyMap<string, tf.Variable> {
    return this.store.named;
  }

  dispose(): void {
    this.store.dispose();
  }
}

/**
 * The predictor of BYOL / SimSiam / MoCo v3: Linear(dim, hidden)-BN-ReLU-Linear(hidden, dim)
 * (BYOL: hidden 4096, dim 256; SimSiam: 512 and 2048; MoCo v3: 4096 and 256).
 * `bnSplits`: its BN's training-mode groups, as the encoder's (core's `bnGroups`), so
 * one process with SplitBatchNorm and N workers with per-worker BN normalise alike.
 */
export function createPredictor(dim: number, hidden: number, rng: Rng, bnSplits = 1): MlpHead {
  return new MlpHead('predictor', { dims: [dim, hidden, dim], bn: true }, { rng, bnSplits });
}
