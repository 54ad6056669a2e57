import * as tf from '@tensorflow/tfjs';
import type { DependencyContainer } from 'tsyringe';
import { ConfigError } from './errors.js';
import { Tokens } from './tokens.js';

/** What the caller of a gather knows about the workers' tensors. */
export interface GatherOptions {
  /**
   * Every worker's tensor has the same shape (e.g. equal slices of the global
   * batch, which a data-parallel run's batches always are): the gather is one
   * collective instead of two (the shapes are not exchanged first). The
   * caller vouches for it: a wrong statement is not detected here (what
   * TensorFlow's gather then does is not specified).
   */
  sameShape?: boolean;
}

/**
 * What crosses workers in a data-parallel run (N workers, one process and one
 * model replica each; docs/design.md, "data-parallel runs"). Every worker calls the same
 * collectives in the same order with tensors of the same shapes (except along
 * axis 0 for the gathers): a collective is matched across workers by its order.
 * Methods say what crosses workers through this part; the trainer stays
 * method-agnostic and only all-reduces the gradient.
 *
 * On one process (`worldSize` 1) every operation is the identity
 * (`singleProcess`), so a method's code is the same in both cases.
 *
 * Implementations raise `DistributedError` (CONTRAST_DISTRIBUTED, in
 * @contrast/distributed) when a peer is lost or a collective times out.
 */
export interface Collectives {
  /** This worker's index, 0..worldSize-1; rank 0 writes the run folder. */
  readonly rank: number;
  /** N: the number of workers. */
  readonly worldSize: number;
  /**
   * The element-wise mean over workers of each tensor (fused into as few
   * all-reduces as the implementation chooses); same shapes out, new tensors.
   * No gradient (it is applied to gradients, after the tape).
   */
  allReduceMean(tensors: tf.Tensor[]): tf.Tensor[];
  /** The element-wise sum over workers of each tensor; as allReduceMean. */
  allReduceSum(tensors: tf.Tensor[]): tf.Tensor[];
  /**
   * Every worker's `x` [n_r, ...] concatenated along axis 0 in rank order:
   * [sum_r n_r, ...]. No gradient (MoCo's `concat_all_gather` for the queue).
   * Unequal n_r cost a second collective unless `options.sameShape` says they are equal.
   */
  allGather<T extends tf.Tensor>(x: T, options?: GatherOptions): T;
  /**
   * allGather whose gradient reaches the worker that produced each row: the
   * backward pass all-reduces (sums) the upstream gradient [sum_r n_r, ...] and
   * keeps this worker's rows (SimCLR's / MoCo v3's gather with gradient). With
   * the gradient averaged over workers afterwards, N workers compute the
   * gradient one process computes on the whole batch.
   */
  allGatherWithGradient<T extends tf.Tensor>(x: T, options?: GatherOptions): T;
  /** Rank `root`'s `x` on every worker (same shape everywhere). No gradient. */
  broadcast<T extends tf.Tensor>(x: T, root?: number): T;
  /**
   * Returns when every worker has called it, waiting at most `timeoutSeconds`
   * (longer than a step's collectives: the others wait here while rank 0
   * evaluates and writes).
   */
  barrier(timeoutSeconds?: number): void;
  /**
   * Runs `work` on worker `root` (default 0) while the others wait for it
   * (rank 0 evaluating, checkpointing), with a long timeout instead of a
   * step's; a failure of `work` reaches every worker (root rethrows it, the
   * others throw). Returns work's result on root, undefined elsewhere.
   */
  waitFor<R>(work: () => R | Promise<R>, root?: number): Promise<R | undefined>;
}

/** The collectives of a single process: every operation is the identity (copies). */
export const singleProcess: Collectives = {
  rank: 0,
  worldSize: 1,
  allReduceMean: (tensors) => tensors.map((t) => tf.clone(t)),
  allReduceSum: (tensors) => tensors.map((t) => tf.clone(t)),
  allGather: (x) => tf.clone(x),
  allGatherWithGradient: (x) => tf.clone(x),
  broadcast: (x) => tf.clone(x),
  barrier: () => undefined,
  waitFor: async (work) => work(),
};

/** The experiment's collectives: what composeExperiment registered, else `singleProcess`. */
export function collectivesOf(container: DependencyContainer): Collectives {
  return container.isRegistered(Tokens.Collectives, true)
    ? container.resolve(Tokens.Collectives)
    : singleProcess;
}

/**
 * BatchNorm groups each worker normalises: `model.bnSplits` counts the groups
 * of the global batch, so N workers split them (per-worker BN, as DDP: N
 * workers with bnSplits 1 train what one process with bnSplits N trains, the
 * recipe's value >= N keeps its meaning).
 * @throws ConfigError (model.bnSplits) when the groups do not divide among the workers.
 */
export function workerBnSplits(bnSplits: number, worldSize: number): number {
  if (worldSize === 1 || bnSplits === 1) return bnSplits;
  if (bnSplits % worldSize !== 0) {
    throw new ConfigError(
      'model.bnSplits',
      `${bnSplits} BatchNorm groups do not divide among ${worldSize} workers`,
      {
        hint: `use 1 (each worker normalises its own slice, as one process with bnSplits ${worldSize}) or a multiple of ${worldSize}`,
      },
    );
  }
  return bnSplits / worldSize;
}

/**
 * The BatchNorm groups of this worker's heads and encoder (workerBnSplits of
 * the experiment), from a plugin's BuildContext.
 */
export function bnGroups(context: {
  config: { model: { bnSplits: number } };
  collectives: Pick<Collectives, 'worldSize'>;
}): number {
  return workerBnSplits(context.config.model.bnSplits, context.collectives.worldSize);
}
