import * as tf from '@tensorflow/tfjs';
import {
  ConfigError,
  type Encoder,
  type KeyEncoderPolicy,
  type Loss,
  type NegativeSource,
} from '@contrast/core';
import type { Optimizer } from './sgd.js';

export interface StepParts {
  encoder: Encoder;
  keyPolicy: KeyEncoderPolicy;
  source: NegativeSource;
  loss: Loss;
  optimizer: Optimizer;
  temperature: number;
  /** Both views act as query (loss.symmetric). */
  symmetric?: boolean;
  /**
   * Called as each phase of the step ends (benchmarks time them; the native
   * backend runs kernels synchronously, so the time between marks is the phase's).
   */
  mark?: (phase: StepPhase) => void;
}

/** The phases of a step, in order. */
export const STEP_PHASES = [
  'key_encoder',
  'query_forward',
  'logits_loss',
  'backward',
  'optimizer',
  'enqueue',
  'ema',
] as const;
export type StepPhase = (typeof STEP_PHASES)[number];

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
  if (parts.symmetric) return symmetricStep(parts, input, lr);
  const { encoder, keyPolicy, source, loss, optimizer, temperature } = parts;
  const mark = parts.mark ?? (() => undefined);
  let accuracy: tf.Scalar | undefined;
  let detachedQuery: tf.Tensor2D | undefined;
  const lossValue = tf.tidy(() => {
    const precomputedKey = keyPolicy.withGradient ? undefined : keyPolicy.encode(input.key);
    mark('key_encoder');
    const { value, grads } = tf.variableGrads(() => {
      const query = encoder.embed(input.query, true); // [N, D]
      const key = precomputedKey ?? keyPolicy.encode(input.key); // [N, D]
      mark('query_forward');
      const keys = source.keys({
        query,
        key,
        indices: input.indices,
        indexArray: input.indexArray,
      });
      const out = loss.compute({ query, ...keys, temperature });
      accuracy = tf.keep(out.accuracy);
      detachedQuery = tf.keep(query);
      mark('logits_loss');
      return out.loss;
    }, encoder.parameters());
    mark('backward');
    optimizer.apply(grads, lr);
    mark('optimizer');
    source.afterStep({
      query: detachedQuery!,
      key: precomputedKey,
      indices: input.indices,
      indexArray: input.indexArray,
    });
    mark('enqueue');
    keyPolicy.afterStep();
    mark('ema');
    return value;
  });
  detachedQuery?.dispose();
  return { loss: lossValue, accuracy: accuracy! };
}

/**
 * The symmetric step (MoCo CIFAR demo's `symmetric`, MoCo v3): keys of both
 * views from the momentum encoder, before the tape; loss = l(q1, k2) + l(q2, k1)
 * against the same negatives; then both keys are enqueued, once; one EMA update.
 */
function symmetricStep(
  parts: StepParts,
  input: StepInput,
  lr: number,
): { loss: tf.Scalar; accuracy: tf.Scalar } {
  const { encoder, keyPolicy, source, loss, optimizer, temperature } = parts;
  if (keyPolicy.kind !== 'momentum') {
    throw new ConfigError(
      'loss.symmetric',
      `needs a momentum key encoder; this strategy's keys are '${keyPolicy.kind}'`,
      {
        hint: 'use it with momentum-queue (end-to-end NT-Xent is already symmetric)',
      },
    );
  }
  let accuracy: tf.Scalar | undefined;
  let detachedQuery: tf.Tensor2D | undefined;
  const lossValue = tf.tidy(() => {
    const k1 = keyPolicy.encode(input.query)!; // the key of view 1 ...
    const k2 = keyPolicy.encode(input.key)!; // ... and of view 2
    const { value, grads } = tf.variableGrads(() => {
      const half = (q: tf.Tensor2D, k: tf.Tensor2D) =>
        loss.compute({
          query: q,
          ...source.keys({
            query: q,
            key: k,
            indices: input.indices,
            indexArray: input.indexArray,
          }),
          temperature,
        });
      const q1 = encoder.embed(input.query, true);
      const q2 = encoder.embed(input.key, true);
      const a = half(q1, k2);
      const b = half(q2, k1);
      accuracy = tf.keep(tf.div(tf.add(a.accuracy, b.accuracy), 2) as tf.Scalar);
      detachedQuery = tf.keep(tf.concat([q1, q2], 0));
      return tf.add(a.loss, b.loss) as tf.Scalar;
    }, encoder.parameters());
    optimizer.apply(grads, lr);
    source.afterStep({
      query: detachedQuery!,
      key: tf.concat([k1, k2], 0),
      indices: tf.concat([input.indices, input.indices], 0),
      indexArray: Int32Array.from([...input.indexArray, ...input.indexArray]),
    });
    keyPolicy.afterStep();
    return value;
  });
  detachedQuery?.dispose();
  return { loss: lossValue, accuracy: accuracy! };
}
