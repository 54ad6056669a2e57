import * as tf from '@tensorflow/tfjs';
import type { Collectives } from './collectives.js';
import type {
  ContrastiveLoss,
  ContrastiveLossInput,
  ContrastiveLossOutput,
  Loss,
} from './contracts.js';
import { ContractError } from './errors.js';
import { crossEntropyAt, l2Normalize, topOneAccuracy } from './math.js';

/**
 * Losses on the two views' embeddings without negatives or a predictor target
 * (Barlow Twins, VICReg), and NNCLR's nearest-neighbour lookup. Pure functions
 * of their inputs and settings. Shapes: N = batch (the GLOBAL batch in a
 * data-parallel run: see `gatherBatch`), D = embedding width.
 */

function sameShape(name: string, a: tf.Tensor2D, b: tf.Tensor2D): void {
  if (a.shape[0] !== b.shape[0] || a.shape[1] !== b.shape[1] || a.shape[0] < 2) {
    throw new ContractError(
      `${name}: the views' embeddings are [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`,
      { hint: 'pass two [N, D] embeddings of the same batch, N >= 2 (batch statistics)' },
    );
  }
}

/** The diagonal [D] of a square matrix [D, D]. */
function diagonal(m: tf.Tensor2D): tf.Tensor1D {
  return tf.sum(tf.mul(m, tf.eye(m.shape[0])), 1) as tf.Tensor1D;
}

/** The sum of the squares of a square matrix's off-diagonal entries. */
function offDiagonalSquares(m: tf.Tensor2D): tf.Scalar {
  const square = tf.square(m);
  return tf.sub(tf.sum(square), tf.sum(tf.mul(square, tf.eye(m.shape[0])))) as tf.Scalar;
}

/** Standardises each column over the batch: BatchNorm1d(affine=False) in training mode (biased var, eps 1e-5). */
export function batchStandardize(z: tf.Tensor2D, eps = 1e-5): tf.Tensor2D {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(z, 0);
    return tf.div(tf.sub(z, mean), tf.sqrt(tf.add(variance, eps))) as tf.Tensor2D;
  });
}

/** Barlow Twins' settings. */
export interface BarlowTwinsSettings {
  /** lambda: weight of the redundancy-reduction (off-diagonal) term (0.0051 in the official code). */
  lambda: number;
  /** A factor on the whole loss (1: the paper and the official code's current version). */
  scale?: number;
}

/**
 * Barlow Twins (Zbontar et al. 2021, Algorithm 1): z1, z2 [N, D] standardised
 * along the batch, C = z1n^T z2n / N [D, D], the cross-correlation;
 * loss = sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2, times `scale`.
 * Minimum 0: identical, decorrelated, standardised embeddings (C = I).
 * @throws ContractError when the shapes differ or N < 2.
 */
export function barlowTwinsLoss(
  z1: tf.Tensor2D,
  z2: tf.Tensor2D,
  { lambda, scale = 1 }: BarlowTwinsSettings,
): tf.Scalar {
  sameShape('barlowTwinsLoss', z1, z2);
  return tf.tidy(() => {
    const n = z1.shape[0];
    const c = tf.div(tf.matMul(batchStandardize(z1), batchStandardize(z2), true, false), n);
    const onDiagonal = tf.sum(tf.square(tf.sub(1, diagonal(c as tf.Tensor2D))));
    const loss = tf.add(onDiagonal, tf.mul(lambda, offDiagonalSquares(c as tf.Tensor2D)));
    return tf.mul(loss, scale) as tf.Scalar;
  });
}

/** VICReg's three weights. */
export interface VicRegSettings {
  /** lambda: invariance (MSE) weight, 25 in the paper. */
  invariance: number;
  /** mu: variance (std hinge) weight, 25 in the paper. */
  variance: number;
  /** nu: covariance weight, 1 in the paper. */
  covariance: number;
}

/** VICReg's loss and its three terms (unweighted). */
export interface VicRegTerms {
  loss: tf.Scalar;
  invariance: tf.Scalar;
  variance: tf.Scalar;
  covariance: tf.Scalar;
}

/** v(z) = mean_j max(0, 1 - sqrt(Var(z_j) + 1e-4)) (unbiased var) and c(z) = sum_{i!=j} Cov(z)_ij^2 / D. */
function varianceCovariance(z: tf.Tensor2D): { v: tf.Scalar; c: tf.Scalar } {
  const [n, d] = z.shape;
  const centred = tf.sub(z, tf.mean(z, 0)) as tf.Tensor2D;
  const cov = tf.div(tf.matMul(centred, centred, true, false), n - 1) as tf.Tensor2D;
  const std = tf.sqrt(tf.add(diagonal(cov), 1e-4));
  return {
    v: tf.mean(tf.relu(tf.sub(1, std))) as tf.Scalar,
    c: tf.div(offDiagonalSquares(cov), d) as tf.Scalar,
  };
}

/**
 * VICReg (Bardes et al. 2022, Algorithm 1, the official code's `VICReg.forward`):
 * invariance s = MSE(z1, z2) (mean over N x D), variance v = (v(z1) + v(z2)) / 2
 * with v the mean over dimensions of the hinge max(0, 1 - sqrt(var + 1e-4)),
 * covariance c = c(z1) + c(z2), the off-diagonal squares of each branch's
 * covariance (over N - 1) divided by D; loss = lambda s + mu v + nu c.
 * @throws ContractError when the shapes differ or N < 2.
 */
export function vicregLoss(z1: tf.Tensor2D, z2: tf.Tensor2D, weights: VicRegSettings): VicRegTerms {
  sameShape('vicregLoss', z1, z2);
  return tf.tidy(() => {
    const invariance = tf.mean(tf.squaredDifference(z1, z2)) as tf.Scalar;
    const a = varianceCovariance(z1);
    const b = varianceCovariance(z2);
    const variance = tf.div(tf.add(a.v, b.v), 2) as tf.Scalar;
    const covariance = tf.add(a.c, b.c) as tf.Scalar;
    const loss = tf.addN([
      tf.mul(weights.invariance, invariance),
      tf.mul(weights.variance, variance),
      tf.mul(weights.covariance, covariance),
    ]) as tf.Scalar;
    return { loss, invariance, variance, covariance };
  });
}

/**
 * Every worker's rows [B, D] in rank order, the gradient flowing back to the
 * worker that produced them (VICReg's FullGatherLayer): a loss of batch
 * statistics computed on it on every worker is the one-process loss on the
 * global batch. The input itself (a copy) on one process.
 */
export function gatherBatch(collectives: Collectives, z: tf.Tensor2D): tf.Tensor2D {
  return collectives.worldSize > 1 ? collectives.allGatherWithGradient(z) : z;
}

/**
 * NNCLR's NN(z, Q): for each row of z [N, D], the row of the support set
 * q [K, D] of largest cosine similarity, as [N, D] (rows of q; ties: the first),
 * and the chosen rows' indices [N]. No gradient reaches q or z through it.
 */
export function nearestNeighbours(
  z: tf.Tensor2D,
  q: tf.Tensor2D,
): { neighbours: tf.Tensor2D; index: tf.Tensor1D } {
  const index = tf.tidy(() => {
    const sim = tf.matMul(l2Normalize(z), l2Normalize(q), false, true); // [N, K]
    return tf.argMax(sim, 1) as tf.Tensor1D;
  });
  // one taped op with a zero gradient (a gather on the tape would differentiate its indices)
  const lookup = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [rows, at] = args as [tf.Tensor2D, tf.Tensor1D];
    const [k, d] = rows.shape;
    const n = at.shape[0];
    return {
      value: tf.gather(rows, at),
      gradFunc: () => [tf.zeros([k, d]), tf.zeros([n])],
    };
  });
  return { neighbours: lookup(q, index) as tf.Tensor2D, index };
}

/**
 * NNCLR's L(nn, p) (Dwibedi et al. 2021, Algorithm 1) as an in-batch loss: each
 * query (a neighbour) against every positive of the batch (the predictions),
 * its own on the diagonal: cross_entropy(query positive^T / t, range(N)),
 * averaged over the rows; query and positive L2-normalised. Unlike MoCo v3's
 * 'infonce-batch' it is not scaled by 2t. Data-parallel: the candidates are
 * every worker's positives (`batch.positive`), this worker's rows from `start`.
 */
export class NeighbourInfoNceLoss implements ContrastiveLoss {
  readonly name = 'nnclr';
  readonly kind = 'in-batch' as const;
  /** log(N): N candidates per query. */
  chance({ batchSize }: { batchSize: number }): number {
    return Math.log(batchSize);
  }
  compute({ query, positive, temperature, batch }: ContrastiveLossInput): ContrastiveLossOutput {
    return tf.tidy(() => {
      const keys = batch?.positive ?? positive;
      const start = batch?.start ?? 0;
      const logits = tf.div(tf.matMul(query, keys, false, true), temperature) as tf.Tensor2D;
      const targets = tf.range(start, start + query.shape[0], 1, 'int32') as tf.Tensor1D;
      return { loss: crossEntropyAt(logits, targets), accuracy: topOneAccuracy(logits, targets) };
    });
  }
}

/** What a 'paired' loss takes: the two views' embeddings [N, D], both with gradient. */
export interface PairedLossInput {
  z1: tf.Tensor2D;
  z2: tf.Tensor2D;
}

/** A 'paired' loss's value and, optionally, its terms (logged as step metrics). */
export interface PairedLossOutput {
  loss: tf.Scalar;
  metrics?: Record<string, tf.Scalar>;
}

/**
 * A loss of the two views' embeddings, kind 'paired' (Barlow Twins, VICReg):
 * no negatives, no target, no predictor; both inputs carry gradient.
 */
export interface PairedLoss extends Loss {
  readonly kind: 'paired';
  compute(input: PairedLossInput): PairedLossOutput;
}

/**
 * Barlow Twins' loss as a 'paired' loss (`barlowTwinsLoss` with `settings`).
 * @throws ContractError (from compute) when the shapes differ or N < 2.
 */
export function barlowTwinsPairedLoss(settings: BarlowTwinsSettings): PairedLoss {
  return {
    name: 'barlow-twins',
    kind: 'paired',
    compute: ({ z1, z2 }) => ({ loss: barlowTwinsLoss(z1, z2, settings) }),
  };
}

/**
 * VICReg's loss as a 'paired' loss (`vicregLoss` with `weights`); its three
 * unweighted terms are the metrics invariance_loss, variance_loss, covariance_loss.
 * @throws ContractError (from compute) when the shapes differ or N < 2.
 */
export function vicregPairedLoss(weights: VicRegSettings): PairedLoss {
  return {
    name: 'vicreg',
    kind: 'paired',
    compute: ({ z1, z2 }) => {
      const { loss, invariance, variance, covariance } = vicregLoss(z1, z2, weights);
      return {
        loss,
        metrics: {
          invariance_loss: invariance,
          variance_loss: variance,
          covariance_loss: covariance,
        },
      };
    },
  };
}
