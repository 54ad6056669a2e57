import * as tf from '@tensorflow/tfjs';
import type {
  ContrastiveLoss,
  ContrastiveLossInput as LossInput,
  ContrastiveLossOutput as LossOutput,
  RegressionLoss,
  RegressionLossInput,
  StateTensors,
} from './contracts.js';
import { ConfigError, StateError } from './errors.js';
import type { LossEntry } from './plugin.js';
import {
  crossEntropyAt,
  infoNceFused,
  infoNceLogits,
  nceLogNormaliser,
  nceLoss,
  negativeCosine,
  normalizedMse,
  ntXent,
  ntXentRows,
  topOneAccuracy,
} from './math.js';

function explicitNegatives(name: string, negatives: LossInput['negatives']): tf.Tensor2D {
  if (negatives === 'in-batch') {
    throw new ConfigError('loss.name', `'${name}' needs explicit negatives (a queue or a bank)`, {
      hint: "use 'nt-xent' with in-batch negatives",
    });
  }
  return negatives;
}

const positiveFirst = (n: number) => tf.zeros([n], 'int32') as tf.Tensor1D;

/** InfoNCE against an explicit set of negatives (queue rows or sampled bank rows). */
export class InfoNceLoss implements ContrastiveLoss {
  readonly name = 'infonce';
  readonly kind = 'explicit' as const;
  /** log(K + 1): the positive is one of K + 1 equally likely candidates. */
  chance({ negatives }: { negatives?: number | undefined }): number | undefined {
    return negatives === undefined ? undefined : Math.log(negatives + 1);
  }
  compute({ query, positive, negatives, temperature }: LossInput): LossOutput {
    const neg = explicitNegatives(this.name, negatives);
    return infoNceFused({ query, positive, negatives: neg, temperature });
  }
}

/** SimCLR's NT-Xent over in-batch negatives; the query and positive are the two views. */
export class NtXentLoss implements ContrastiveLoss {
  readonly name = 'nt-xent';
  readonly kind = 'in-batch' as const;
  /** log(2N - 1): each of 2N views has 2N - 1 candidates. */
  chance({ batchSize }: { batchSize: number }): number {
    return Math.log(2 * batchSize - 1);
  }
  compute({ query, positive, negatives, temperature, batch }: LossInput): LossOutput {
    if (negatives !== 'in-batch') {
      throw new ConfigError('loss.name', "'nt-xent' takes its negatives from the batch", {
        hint: "use 'infonce' or 'nce' with a queue or a bank",
      });
    }
    return tf.tidy(() => {
      const { loss, logits, targets } = batch
        ? ntXentRows(batch.query, batch.positive, query, positive, batch.start, temperature)
        : ntXent(query, positive, temperature);
      return { loss, accuracy: topOneAccuracy(logits, targets) };
    });
  }
}

/**
 * MoCo v3's contrastive loss: every query against all N keys of the batch
 * (its own key on the diagonal is the positive, the other N - 1 keys are the
 * negatives), cross-entropy on q k^T / t, scaled by 2t as in MoCo v3.
 */
export class KeyBatchInfoNceLoss implements ContrastiveLoss {
  readonly name = 'infonce-batch';
  readonly kind = 'in-batch' as const;
  /** 2t log(N): N keys per query, scaled by 2t. */
  chance({ batchSize, temperature }: { batchSize: number; temperature: number }): number {
    return 2 * temperature * Math.log(batchSize);
  }
  compute({ query, positive, temperature, batch }: LossInput): LossOutput {
    return tf.tidy(() => {
      // data-parallel: against every worker's keys, this worker's own on the shifted diagonal
      const keys = batch?.positive ?? positive;
      const start = batch?.start ?? 0;
      const logits = tf.div(tf.matMul(query, keys, false, true), temperature) as tf.Tensor2D;
      const targets = tf.range(start, start + query.shape[0], 1, 'int32') as tf.Tensor1D;
      const loss = tf.mul(crossEntropyAt(logits, targets), 2 * temperature) as tf.Scalar;
      return { loss, accuracy: topOneAccuracy(logits, targets) };
    });
  }
}

/**
 * InstDisc's NCE with a normaliser Z estimated once, on the first batch, and
 * kept in log space (log Z, see `nceLogNormaliser`): Z = exp(1/t) * N overflows
 * float64 below t ~ 0.0015, log Z never does. State: `{ logZ }` (checkpoints
 * written before the log form hold `{ z }`, read as log z).
 */
export class NceLoss implements ContrastiveLoss {
  readonly name = 'nce';
  readonly kind = 'explicit' as const;
  private logNormaliser: number | undefined;

  constructor(private readonly datasetSize: number) {}

  /** log Z, once fixed. */
  get logZ(): number | undefined {
    return this.logNormaliser;
  }

  /** Z itself (Infinity when it exceeds float64; the loss only uses log Z). */
  get z(): number | undefined {
    return this.logNormaliser === undefined ? undefined : Math.exp(this.logNormaliser);
  }

  compute({ query, positive, negatives, temperature }: LossInput): LossOutput {
    const neg = explicitNegatives(this.name, negatives);
    return tf.tidy(() => {
      const logits = infoNceLogits(query, positive, neg, temperature); // [N, 1+K]
      // One scalar read, once per run: Z must be a constant, not a function of the weights.
      this.logNormaliser ??= nceLogNormaliser(logits, this.datasetSize);
      return {
        loss: nceLoss(logits, this.logNormaliser, this.datasetSize),
        accuracy: topOneAccuracy(logits, positiveFirst(logits.shape[0])),
      };
    });
  }

  state(): StateTensors {
    const logZ = this.logNormaliser;
    return { tensors: {}, values: logZ === undefined ? {} : { logZ } };
  }

  loadState(state: StateTensors): void {
    const { logZ, z } = state.values;
    if (logZ !== undefined) {
      if (typeof logZ !== 'number') throw new StateError('NCE normaliser logZ is not a number');
      this.logNormaliser = logZ;
    } else if (z !== undefined) {
      if (typeof z !== 'number') throw new StateError('NCE normaliser z is not a number');
      this.logNormaliser = Math.log(z);
    } else {
      this.logNormaliser = undefined;
    }
  }
}

/** SimSiam's negative cosine D(p, z) = -cos(p, z), averaged over the batch; minimum -1. */
export class NegativeCosineLoss implements RegressionLoss {
  readonly name = 'negative-cosine';
  readonly kind = 'regression' as const;
  compute({ prediction, target }: RegressionLossInput): { loss: tf.Scalar } {
    return { loss: negativeCosine(prediction, target) };
  }
}

/** BYOL's normalised MSE ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z), averaged over the batch; minimum 0. */
export class NormalizedMseLoss implements RegressionLoss {
  readonly name = 'normalized-mse';
  readonly kind = 'regression' as const;
  compute({ prediction, target }: RegressionLossInput): { loss: tf.Scalar } {
    return { loss: normalizedMse(prediction, target) };
  }
}

/**
 * The losses every experiment can select by name (`loss.name`), by the kind of
 * input they take; plugins add their own through `Plugin.losses`.
 */
export const SHARED_LOSSES: Readonly<Record<string, LossEntry>> = {
  infonce: { kind: 'explicit', create: () => new InfoNceLoss() },
  nce: { kind: 'explicit', create: ({ datasetSize }) => new NceLoss(datasetSize) },
  'nt-xent': { kind: 'in-batch', create: () => new NtXentLoss() },
  'normalized-mse': { kind: 'regression', create: () => new NormalizedMseLoss() },
  'negative-cosine': { kind: 'regression', create: () => new NegativeCosineLoss() },
};
