import * as tf from '@tensorflow/tfjs';
import { l2Normalize, type Encoder, type Rng } from '@contrast/core';
import { BatchNorm, Linear } from './layers.js';
import { ParamStore } from './params.js';

/**
 * A query encoder with a prediction head on top (BYOL, MoCo v3): embed(x) =
 * normalize(fc2(relu(bn(fc1(base.embed(x)))))). Only the query side has it: a
 * momentum key encoder follows `base`, never the predictor. The predictor's
 * variables are parameters of this encoder (the optimizer trains them) and are
 * saved with it. Its input is the base's L2-normalised projection.
 */
export class PredictorEncoder implements Encoder {
  readonly name: string;
  readonly featureDim: number;
  readonly embedDim: number;
  private readonly store: ParamStore;
  private readonly fc1: Linear;
  private readonly bn: BatchNorm;
  private readonly fc2: Linear;

  constructor(
    readonly base: Encoder,
    readonly hiddenDim: number,
    options: { rng?: Rng; source?: ReadonlyMap<string, tf.Tensor>; trainable?: boolean },
  ) {
    this.name = `${base.name}+predictor`;
    this.featureDim = base.featureDim;
    this.embedDim = base.embedDim;
    this.store = new ParamStore(options.trainable ?? true, options.rng, options.source);
    this.fc1 = new Linear(this.store, 'predictor/fc1', base.embedDim, hiddenDim);
    this.bn = new BatchNorm(this.store, 'predictor/bn', hiddenDim);
    this.fc2 = new Linear(this.store, 'predictor/fc2', hiddenDim, base.embedDim);
  }

  features(x: tf.Tensor4D, training: boolean): tf.Tensor2D {
    return this.base.features(x, training);
  }

  embed(x: tf.Tensor4D, training: boolean): tf.Tensor2D {
    return tf.tidy(() => {
      const h = this.fc1.apply(this.base.embed(x, training));
      const n = this.bn.apply(h.reshape([h.shape[0], 1, 1, this.hiddenDim]), training);
      return l2Normalize(this.fc2.apply(tf.relu(n).reshape([h.shape[0], this.hiddenDim])));
    });
  }

  parameters(): tf.Variable[] {
    return [...this.base.parameters(), ...this.store.params];
  }

  namedVariables(): ReadonlyMap<string, tf.Variable> {
    return new Map([...this.base.namedVariables(), ...this.store.named]);
  }

  clone(options: { trainable: boolean }): PredictorEncoder {
    return new PredictorEncoder(this.base.clone(options), this.hiddenDim, {
      trainable: options.trainable,
      source: this.store.named,
    });
  }

  dispose(): void {
    this.base.dispose();
    this.store.dispose();
  }
}
