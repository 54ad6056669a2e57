import * as tf from '@tensorflow/tfjs';
import {
  Stateless,
  type Encoder,
  type KeyEncoderPolicy,
  type StateTensors,
  type TrainingClock,
} from './contracts.js';
import { singleProcess, type Collectives } from './collectives.js';
import { ConfigError, StateError } from './errors.js';
import { cosineMomentum, emaUpdateVariables } from './math.js';
import type { Rng } from './rng.js';

/** Gathers rows `perm` of x, and the inverse permutation that puts them back. */
export function shuffleRows<T extends tf.Tensor>(
  x: T,
  perm: Int32Array,
): { shuffled: T; inverse: Int32Array } {
  const inverse = new Int32Array(perm.length);
  for (let i = 0; i < perm.length; i++) inverse[perm[i]!] = i;
  return { shuffled: tf.gather(x, Array.from(perm)) as T, inverse };
}

/**
 * MoCo's key encoder: an EMA copy of the query encoder that never receives a gradient.
 * theta_k <- m theta_k + (1 - m) theta_q after every step ("m = 0.999 in MoCo v1";
 * the CIFAR demo uses 0.99). Only parameters are averaged: the key encoder's BN
 * running statistics come from its own forward passes, as in the official code.
 */
export class MomentumKeyEncoder implements KeyEncoderPolicy {
  readonly withGradient = false;
  readonly updatePhase = 'ema';
  readonly keyEncoder: Encoder;

  constructor(
    private readonly queryEncoder: Encoder,
    /** A number, or a function of nothing that returns the current momentum (schedules). */
    private readonly momentum: number | (() => number),
    /**
     * Shuffle BN on one device: with a stream here, the key batch is shuffled
     * before the key encoder and its keys un-shuffled after, so with split
     * BatchNorm (model.bnSplits > 1) a query and its key are normalised with
     * statistics of different sub-batches, as MoCo's shuffling BN across GPUs.
     */
    private readonly shuffle?: Rng,
    /**
     * Data-parallel shuffle BN (MoCo's official code): the key images of every
     * worker are gathered, permuted by a permutation every worker draws alike
     * (the same stream), each worker encodes its slice of the permuted batch,
     * the keys are gathered and un-permuted, and each keeps its own rows.
     */
    private readonly collectives: Collectives = singleProcess,
  ) {
    const m = typeof momentum === 'number' ? momentum : momentum();
    if (!(m >= 0 && m <= 1)) {
      throw new ConfigError('strategy.momentum', `must be in [0, 1], got ${m}`, {
        hint: 'MoCo uses 0.99-0.999',
      });
    }
    this.keyEncoder = queryEncoder.clone({ trainable: false });
  }

  get currentMomentum(): number {
    return typeof this.momentum === 'number' ? this.momentum : this.momentum();
  }

  /** Keys [N, D] in training mode (batch statistics), like the official implementation. */
  encode(xKey: tf.Tensor4D): tf.Tensor2D {
    if (!this.shuffle) return this.keyEncoder.embed(xKey, true);
    const c = this.collectives;
    if (c.worldSize === 1) {
      return tf.tidy(() => {
        const { shuffled, inverse } = shuffleRows(xKey, this.shuffle!.permutation(xKey.shape[0]));
        return tf.gather(this.keyEncoder.embed(shuffled, true), Array.from(inverse)) as tf.Tensor2D;
      });
    }
    return tf.tidy(() => {
      // the workers' slices are equal (the global batch divides among them): one collective each
      const all = c.allGather(xKey, { sameShape: true }); // [B, H, W, C], rank order
      const n = xKey.shape[0];
      const start = c.rank * n;
      const { shuffled, inverse } = shuffleRows(all, this.shuffle!.permutation(all.shape[0]));
      const mine = tf.slice(shuffled, [start], [n]) as tf.Tensor4D;
      const keys = c.allGather(this.keyEncoder.embed(mine, true), { sameShape: true }); // [B, D], permuted order
      return tf.gather(keys, Array.from(inverse.subarray(start, start + n))) as tf.Tensor2D;
    });
  }

  afterStep(): void {
    emaUpdateVariables(
      this.keyEncoder.parameters(),
      this.queryEncoder.parameters(),
      this.currentMomentum,
    );
  }

  state(): StateTensors {
    const tensors: Record<string, tf.Tensor> = {};
    for (const [name, v] of this.keyEncoder.namedVariables()) tensors[name] = v;
    return { tensors, values: this.shuffle ? { shuffle_rng: this.shuffle.getState() } : {} };
  }

  loadState(state: StateTensors): void {
    for (const [name, v] of this.keyEncoder.namedVariables()) {
      const t = state.tensors[name];
      if (!t)
        throw new StateError(`key encoder state lacks '${name}'`, {
          hint: 'resume with the same model config',
        });
      v.assign(t);
    }
    const rng = state.values.shuffle_rng;
    if (this.shuffle && Array.isArray(rng)) this.shuffle.setState(rng);
  }

  dispose(): void {
    this.keyEncoder.dispose();
  }
}

/** End-to-end: keys come from the query encoder itself, with gradient. */
export class SharedKeyEncoder extends Stateless implements KeyEncoderPolicy {
  readonly withGradient: boolean = true;
  constructor(private readonly encoder: Encoder) {
    super();
  }
  encode(xKey: tf.Tensor4D): tf.Tensor2D {
    return this.encoder.embed(xKey, true);
  }
}

/**
 * Stop-gradient keys without a momentum copy: the query encoder itself encodes
 * the key view before the tape, so the keys carry no gradient and their
 * activations are not retained (NNCLR's support keys, a MoCo with m = 0 without
 * the copy). Its training-mode forward also updates the encoder's BN running
 * statistics, as any forward of the shared encoder does.
 */
export class StopGradientKeyEncoder extends SharedKeyEncoder {
  override readonly withGradient = false;
}

/** Memory bank: no key encoder; positives are stored features. */
export class NoKeyEncoder extends Stateless implements KeyEncoderPolicy {
  readonly withGradient = false;
  encode(): undefined {
    return undefined;
  }
}

/**
 * The momentum a key / target encoder uses at each step: `m0` throughout
 * ('fixed', MoCo v1/v2), or rising from `m0` to 1 on a half cosine over the run
 * ('cosine', BYOL, MoCo v3), read from the training clock.
 */
export function scheduledMomentum(
  m0: number,
  schedule: 'fixed' | 'cosine',
  clock: TrainingClock,
): number | (() => number) {
  return schedule === 'cosine' ? () => cosineMomentum(m0, clock.step, clock.total) : m0;
}
