import * as tf from '@tensorflow/tfjs';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { alignmentUniformity, embeddingStd } from './knn.js';

/**
 * Training-health checks on the embeddings and the pretext task, the signs of
 * runs that will not learn: collapse (all images mapped to one point, or to a
 * few dimensions), a pretext task solved by a shortcut (a BN leak: accuracy at
 * 100% early), and a loss that stays at its chance value.
 */

/** Health statistics of L2-normalised embeddings z [N, D]. */
export interface EmbeddingHealth {
  /** Mean per-dimension std (SimSiam's collapse indicator): ~1/sqrt(D) spread out, 0 collapsed. */
  std: number;
  /** std * sqrt(D): ~1 when spread out, 0 when collapsed. */
  stdRatio: number;
  /**
   * Effective rank (Roy & Vetterli 2007; RankMe, Garrido et al. 2023):
   * exp(entropy of the normalised singular values of z), in [1, D]; 1 = one direction.
   */
  effectiveRank: number;
  /** Wang & Isola's uniformity log E exp(-2 ||x - y||^2): 0 when all points coincide. */
  uniformity: number;
}

/**
 * Effective rank of z [N, D] from the eigenvalues of its Gram matrix z^T z
 * ([D, D]; singular values are their square roots), with ml-matrix's symmetric
 * eigen-decomposition. A constant z gives 1; D orthogonal directions of equal
 * weight give D.
 */
export function effectiveRank(z: tf.Tensor2D): number {
  const d = z.shape[1];
  const gram = tf.tidy(() => tf.matMul(z, z, true, false).dataSync());
  const m = new Matrix(d, d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) m.set(i, j, gram[i * d + j]!);
  const sv = new EigenvalueDecomposition(m, { assumeSymmetric: true }).realEigenvalues.map((l) =>
    Math.sqrt(Math.max(l, 0)),
  );
  const total = sv.reduce((a, b) => a + b, 0);
  if (total <= 0) return 0;
  const entropy = sv.reduce((h, s) => (s > 0 ? h - (s / total) * Math.log(s / total) : h), 0);
  return Math.exp(entropy);
}

/** The health statistics of L2-normalised embeddings z [N, D] (N >= 2). */
export function embeddingHealth(z: tf.Tensor2D): EmbeddingHealth {
  const std = embeddingStd(z);
  return {
    std,
    stdRatio: std * Math.sqrt(z.shape[1]),
    effectiveRank: effectiveRank(z),
    uniformity: alignmentUniformity({ a: z, b: z }).uniformity,
  };
}

export type HealthCode =
  'CONTRAST_HEALTH_COLLAPSE' | 'CONTRAST_HEALTH_SHORTCUT' | 'CONTRAST_HEALTH_STALLED';

/** A coded warning about a run, at an epoch (1-based). */
export interface HealthWarning {
  code: HealthCode;
  epoch: number;
  message: string;
}

/**
 * Where the checks draw the line. Healthy runs here sit far from them (the
 * default MoCo recipe: std ratio ~0.98, effective rank in the tens, uniformity ~-3.3).
 */
export const HEALTH_THRESHOLDS = {
  /** Collapse below this std ratio (std * sqrt(D)). */
  stdRatio: 0.2,
  /** Collapse below this effective rank. */
  effectiveRank: 2,
  /** Collapse above this uniformity (0 = one point). */
  uniformity: -0.3,
  /** Shortcut: mean pretext accuracy at or above this, in the first half of training. */
  accuracy: 0.995,
  /**
   * Shortcut: the fewest pretext predictions (steps x queries per step) the
   * accuracy must be measured on before it counts. One batch is noise: a run
   * whose true pretext accuracy is 0.99 (healthy, an easy task) reads >= 0.995
   * on one batch of 256 with probability 0.27, and at 0.98 with 0.035
   * (binomial, at most 1 miss in 256); on 2,560 predictions (10 steps of 256)
   * those fall to 0.002 and 4e-11, while a shortcut (accuracy ~1) still
   * crosses the line. The first steps are also not evidence: the queue or bank
   * still holds its random init, which the positive beats on nearly every
   * query. A 1-step run (or an epoch's last quarter of fewer than 10 steps of
   * 256) therefore raises no shortcut warning.
   */
  shortcutMinPredictions: 2560,
  /** Stalled: mean loss at or above this fraction of the chance loss, from the second epoch on. */
  chance: 0.97,
} as const;

/** What one epoch of a run looked like, for `checkHealth`. */
export interface EpochHealth {
  /** 1-based epoch. */
  epoch: number;
  /** Epochs the run takes in all. */
  epochs: number;
  embeddings: EmbeddingHealth;
  /** The epoch's last steps' losses and (contrastive methods) pretext accuracies. */
  losses: readonly number[];
  accuracies?: readonly number[];
  /** Pretext predictions behind each of `accuracies` (queries per step: the batch size). */
  predictionsPerStep: number;
  /** The loss of a model that has learnt nothing (e.g. log(K + 1) for InfoNCE), when known. */
  chanceLoss?: number | undefined;
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The warnings an epoch earns (none for a healthy one). */
export function checkHealth(e: EpochHealth, t = HEALTH_THRESHOLDS): HealthWarning[] {
  const out: HealthWarning[] = [];
  const { stdRatio, effectiveRank: rank, uniformity } = e.embeddings;
  if (stdRatio < t.stdRatio || rank < t.effectiveRank || uniformity > t.uniformity) {
    out.push({
      code: 'CONTRAST_HEALTH_COLLAPSE',
      epoch: e.epoch,
      message:
        `embeddings are collapsing (std x sqrt(D) ${stdRatio.toFixed(3)}, effective rank ` +
        `${rank.toFixed(2)}, uniformity ${uniformity.toFixed(3)}): check the stop-gradient / ` +
        'momentum encoder, lower the lr, or raise the momentum',
    });
  }
  const acc = e.accuracies && e.accuracies.length > 0 ? mean(e.accuracies) : undefined;
  const evidence = (e.accuracies?.length ?? 0) * e.predictionsPerStep;
  if (
    acc !== undefined &&
    acc >= t.accuracy &&
    evidence >= t.shortcutMinPredictions &&
    e.epoch <= Math.ceil(e.epochs / 2)
  ) {
    out.push({
      code: 'CONTRAST_HEALTH_SHORTCUT',
      epoch: e.epoch,
      message:
        `the pretext task is solved (accuracy ${(100 * acc).toFixed(1)}% over ${evidence} predictions) in the first half of ` +
        'training: a shortcut such as BN statistics leaking between query and key; use shuffle BN ' +
        '(model.bnSplits with strategy.shuffleBn) or harder augmentation',
    });
  }
  const loss = e.losses.length > 0 ? mean(e.losses) : undefined;
  if (e.chanceLoss !== undefined && loss !== undefined && e.epoch >= 2) {
    if (loss >= t.chance * e.chanceLoss) {
      out.push({
        code: 'CONTRAST_HEALTH_STALLED',
        epoch: e.epoch,
        message: `the loss stays at its chance value (${loss.toFixed(3)} vs ${e.chanceLoss.toFixed(3)}): raise the lr, check the temperature and the augmentation`,
      });
    }
  }
  return out;
}
