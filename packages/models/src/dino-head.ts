import * as tf from '@tensorflow/tfjs';
import { l2Normalize, type Head, type Rng } from '@contrast/core';
import { ParamStore } from './params.js';
import { gelu } from './vit.js';

/** The sizes of a DINO head (main_dino.py's DINOHead; the paper's in brackets). */
export interface DinoHeadOptions {
  /** The backbone's feature width (the head's input). */
  inDim: number;
  /** Hidden width of the MLP (2048). */
  hiddenDim: number;
  /** Width of the l2-normalised bottleneck (256). */
  bottleneckDim: number;
  /** K: the output width, the number of "prototypes" (65536). */
  outDim: number;
  /** Linear layers of the MLP, the bottleneck's included (3). */
  layers: number;
}

/**
 * DINO's projection head (Caron et al. 2021; main_dino.py's DINOHead with
 * use_bn False and norm_last_layer True):
 *   h = MLP(x)  (Linear-GELU x (layers - 1), then Linear to the bottleneck)
 *   y = W^T l2normalize(h),  W = V / ||V||  column by column (weight_norm, g = 1 fixed)
 *   x [N, inDim] -> y [N, outDim]
 * The MLP's weights are drawn N(0, 0.02^2) (its trunc_normal_ with bounds +-2,
 * i.e. +-100 std) with zero biases; V as PyTorch's nn.Linear, U(+-1/sqrt(bottleneck)).
 * Variables: `dino_head/fc<i>/{w,b}`, `dino_head/last/v` ([bottleneck, K]).
 */
export class DinoHead implements Head {
  readonly inDim: number;
  readonly outDim: number;
  private readonly store: ParamStore;
  private readonly mlp: { w: tf.Variable; b: tf.Variable }[] = [];
  /** V [bottleneck, K]: the direction of each output unit's weights. */
  readonly lastV: tf.Variable;

  constructor(
    readonly options: DinoHeadOptions,
    init: { rng?: Rng; source?: ReadonlyMap<string, tf.Tensor>; trainable?: boolean },
  ) {
    const { inDim, hiddenDim, bottleneckDim, outDim } = options;
    this.inDim = inDim;
    this.outDim = outDim;
    this.store = new ParamStore(init.trainable ?? true, init.rng, init.source);
    const layers = Math.max(1, options.layers);
    const dims = [inDim, ...Array<number>(layers - 1).fill(hiddenDim), bottleneckDim];
    for (let i = 0; i < layers; i++) {
      const [fanIn, fanOut] = [dims[i]!, dims[i + 1]!];
      const w = this.store.drawn(`dino_head/fc${i + 1}/w`, [fanIn, fanOut], (r) =>
        r.normalArray(fanIn * fanOut, 0.02),
      );
      this.mlp.push({ w, b: this.store.param(`dino_head/fc${i + 1}/b`, [fanOut], 0) });
    }
    const bound = 1 / Math.sqrt(bottleneckDim);
    this.lastV = this.store.drawn('dino_head/last/v', [bottleneckDim, outDim], (r) =>
      r.uniformArray(bottleneckDim * outDim, -bound, bound),
    );
  }

  /** The weight-normalised last layer W [bottleneck, K]: unit-norm columns. */
  lastWeight(): tf.Tensor2D {
    // weight_norm's w = g v / ||v|| over every axis but the output's (no eps), g = 1
    return tf.tidy(() => tf.div(this.lastV, tf.norm(this.lastV, 'euclidean', 0, true)));
  }

  apply(x: tf.Tensor2D, _training: boolean): tf.Tensor2D {
    return tf.tidy(() => {
      let h: tf.Tensor2D = x;
      this.mlp.forEach(({ w, b }, i) => {
        h = tf.add(tf.matMul(h, w as tf.Tensor2D), b) as tf.Tensor2D;
        if (i < this.mlp.length - 1) h = gelu(h) as tf.Tensor2D;
      });
      return tf.matMul(l2Normalize(h), this.lastWeight());
    });
  }

  /** The MLP's parameters (trained from the start). */
  mlpParameters(): tf.Variable[] {
    return this.mlp.flatMap(({ w, b }) => [w, b]);
  }

  /** Every parameter, the MLP's first, then V (what an EMA copy follows, in this order). */
  parameters(): tf.Variable[] {
    return this.store.params;
  }

  namedVariables(): ReadonlyMap<string, tf.Variable> {
    return this.store.named;
  }

  /** A structurally identical head holding the same values (DINO's teacher: trainable false). */
  clone(options: { trainable: boolean }): DinoHead {
    return new DinoHead(this.options, { trainable: options.trainable, source: this.store.named });
  }

  dispose(): void {
    this.store.dispose();
  }
}
