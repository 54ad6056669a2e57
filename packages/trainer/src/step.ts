import * as tf from '@tensorflow/tfjs';
import type { Encoder, KeyEncoderPolicy, Loss, NegativeSource } from '@contrast/core';
import type { Optimizer } from './sgd.js';

export interface StepParts {
  encoder: Encoder;
  keyPolicy: KeyEncoderPolicy;
  source: NegativeSource;
  loss: Loss;
  optimizer: Optimizer;
  temperature: number;
}

export interface StepInput {
  /** [N, H, W, C] augmented query view. */
  query: tf.Tensor4D;
  /** [N, H, W, C] augmented key view. */
  key: tf.Tensor4D;
  /** [N] dataset indices. */
  indices: tf.Tensor1D;
  /** The same indices on the host. */
  indexArray: Int32Array;
}

/**
 * The generic contrastive step (DESIGN.md), the same for every mechanism:
 *   keys without gradient are encoded before the tape (their activations are not retained),
 *   q = encoder.embed(x_q); keys = source.keys(...); loss; grads w.r.t. the query
 *   encoder's parameters only; SGD; then source.afterStep (enqueue / bank write)
 *   and keyPolicy.afterStep (EMA).
 * Returns the loss and pretext accuracy as scalars the caller reads and disposes.
 */
export function contrastiveStep(
  parts: StepParts,
  input: StepInput,
  lr: number,
): { loss: tf.Scalar; accuracy: tf.Scalar } {
  const { encoder, keyPolicy, source, loss, optimizer, temperature } = parts;
  let accuracy: tf.Scalar | undefined;
  let detachedQuery: tf.Tensor2D | undefined;
  const lossValue = tf.tidy(() => {
    const precomputedKey = keyPolicy.withGradient ? undefined : keyPolicy.encode(input.key);
    const { value, grads } = tf.variableGrads(() => {
      const query = encoder.embed(input.query, true); // [N, D]
      const key = precomputedKey ?? keyPolicy.encode(input.key); // [N, D]
      const keys = source.keys({
        query,
        key,
        indices: input.indices,
        indexArray: input.indexArray,
      });
      const out = loss.compute({ query, ...keys, temperature });
      accuracy = tf.keep(out.accuracy);
      detachedQuery = tf.keep(query);
      return out.loss;
    }, encoder.parameters());
    optimizer.apply(grads, lr);
    source.afterStep({
      query: detachedQuery!,
      key: precomputedKey,
      indices: input.indices,
      indexArray: input.indexArray,
    });
    keyPolicy.afterStep();
    return value;
  });
  detachedQuery?.dispose();
  return { loss: lossValue, accuracy: accuracy! };
}
