import type * as tf from '@tensorflow/tfjs';
import type { EncoderSpec, z } from '@contrast/core';
import type { BackwardTape, Traced } from './backward.js';
import type { ArchNode } from './layers.js';
import type { ParamStore } from './params.js';

/**
 * A backbone maps images [N, H, W, C] to pooled features [N, featureDim]; it is
 * built against a ParamStore (its variables, by stable name, in creation order).
 * `apply` is all a backbone must have: training runs it under tfjs's autodiff.
 * The rest are optional: `train`, a training-mode forward recording a
 * hand-written backward (a speed-up on the native backend, used when present),
 * and `describe`, the eval-mode forward as operations, which the tf.layers
 * export needs.
 */
export interface Backbone {
  readonly featureDim: number;
  apply(x: tf.Tensor4D, training: boolean): tf.Tensor2D;
  /** Training-mode forward recording a hand-written backward (native backend). */
  train?(x: tf.Tensor4D, tape: BackwardTape): Traced<tf.Tensor2D>;
  /** The eval-mode forward as a list of operations (what `apply(x, false)` computes). */
  describe?(): ArchNode[];
}

/**
 * A named backbone: its own `model` options (a strict zod object, defaults
 * filled in) and how to build it from them. `encoderEntry` turns it into a
 * registry entry (the backbone with Contrast's projection head on top).
 */
export interface BackboneEntry<S extends z.AnyZodObject = z.AnyZodObject> {
  readonly description: string;
  readonly optionsSchema: S;
  build(store: ParamStore, options: z.infer<S>, input: EncoderSpec['input']): Backbone;
}

/** Identity with the options' type inferred from the schema. */
export function defineBackbone<S extends z.AnyZodObject>(
  entry: BackboneEntry<S>,
): BackboneEntry<S> {
  return entry;
}
