import * as tf from '@tensorflow/tfjs';
import { singleProcess, type Collectives } from './collectives.js';
import type { Head, Loss, StateTensors, Stateful } from './contracts.js';
import { ConfigError, ContractError, StateError } from './errors.js';
import { KeyQueue } from './queue.js';
import type { Rng } from './rng.js';

/**
 * SwAV's online clustering (Caron et al. 2020, Algorithm 1; the official code's
 * `distributed_sinkhorn` and the loss of `main_swav.py`): codes from the
 * Sinkhorn-Knopp algorithm, and the swapped prediction of each global crop's
 * codes from every other crop's scores. Shapes: B = batch rows on this worker,
 * K = prototypes, V = crops.
 */

/** The Sinkhorn-Knopp settings (the official code's defaults: epsilon 0.05, 3 iterations). */
export interface SinkhornSettings {
  /** epsilon: the entropic regulariser; Q = exp(scores / epsilon) before the normalisations. */
  epsilon: number;
  /** Alternations of the row (prototype) and column (sample) normalisations. */
  iterations: number;
  /** Data-parallel: Q's total and row sums are every worker's (the official all_reduce). */
  collectives?: Collectives;
}

/** The sum over workers of `t` (t itself on one process). */
function sumOverWorkers(c: Collectives, t: tf.Tensor): tf.Tensor {
  return c.worldSize > 1 ? c.allReduceSum([t])[0]! : t;
}

/** The Sinkhorn-Knopp iterations on Q [K, B_total local columns], as distributed_sinkhorn. */
function sinkhornIterations(scores: tf.Tensor2D, s: SinkhornSettings): tf.Tensor2D {
  const c = s.collectives ?? singleProcess;
  const [rows, k] = scores.shape;
  const b = rows * c.worldSize; // samples to assign, every worker's
  let q = tf.transpose(tf.exp(tf.div(scores, s.epsilon))); // [K, B]: the paper's notation
  q = tf.div(q, sumOverWorkers(c, tf.sum(q)));
  for (let it = 0; it < s.iterations; it++) {
    // each prototype's total weight 1/K, then each sample's 1/B
    q = tf.div(tf.div(q, sumOverWorkers(c, tf.sum(q, 1, true))), k);
    q = tf.div(tf.div(q, tf.sum(q, 0, true)), b);
  }
  return tf.transpose(tf.mul(q, b)) as tf.Tensor2D; // columns sum to 1: an assignment per sample
}

/**
 * SwAV's codes: the equal-partition assignment of B samples to K prototypes
 * by the Sinkhorn-Knopp algorithm (`distributed_sinkhorn`). Q = exp(scores /
 * epsilon)^T [K, B] is divided by its total, then `iterations` times each row
 * is scaled to sum 1/K and each column to sum 1/B; the result times B is
 * returned as [B, K], each row an assignment summing to 1 (the rows' prototype
 * totals tend to B/K as the iterations grow). No gradient flows through it
 * (one taped op with a zero gradient: the paper computes the codes under
 * `torch.no_grad()`).
 *
 * scores [B, K]: the samples' prototype scores z . c_k (unit z and c_k, so
 * |scores| <= 1 and exp(1 / epsilon) stays finite in float32 for epsilon >= 1/80).
 * Data-parallel, the total and row sums are all-reduced so that every worker's
 * rows are assigned as one process assigns the global batch's.
 * @throws ContractError when scores is not [B >= 1, K >= 1] or a setting is out of range.
 */
export function sinkhornKnopp(scores: tf.Tensor2D, settings: SinkhornSettings): tf.Tensor2D {
  const { epsilon, iterations } = settings;
  if (scores.rank !== 2 || scores.shape[0] < 1 || scores.shape[1] < 1) {
    throw new ContractError(`sinkhornKnopp: scores are [${scores.shape.join(', ')}]`, {
      hint: 'pass [B, K] prototype scores, B >= 1 samples and K >= 1 prototypes',
    });
  }
  if (!(epsilon > 0) || !Number.isInteger(iterations) || iterations < 1) {
    throw new ContractError(
      `sinkhornKnopp: epsilon ${epsilon}, iterations ${iterations}; epsilon must be > 0 and iterations an integer >= 1`,
      { hint: 'use the paper settings: epsilon 0.05, 3 iterations' },
    );
  }
  const codes = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const x = args[0] as tf.Tensor2D;
    return {
      value: tf.tidy(() => sinkhornIterations(x, settings)),
      gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
    };
  });
  return codes(scores) as tf.Tensor2D;
}

/** One global crop's codes: which crop they were computed from, and q [B, K]. */
export interface CropCodes {
  crop: number;
  codes: tf.Tensor2D;
}

/**
 * SwAV's swapped prediction (main_swav.py): for each global crop a with codes
 * q_a, the cross-entropy -sum_k q_a log softmax(scores_v / tau) averaged over the
 * batch, averaged over every other crop v != a (the other global and all local
 * crops), then averaged over the global crops:
 *   L = 1/|A| sum_a 1/(V-1) sum_{v != a} -mean_b sum_k q_a[b,k] log softmax(s_v[b] / tau)[k]
 * scores: V crops' [B, K] prototype scores (with gradient); codes: the global
 * crops' (no gradient).
 * @throws ContractError for fewer than 2 crops, a crop index out of range or mismatched shapes.
 */
export function swappedPredictionLoss(
  scores: readonly tf.Tensor2D[],
  codes: readonly CropCodes[],
  temperature: number,
): tf.Scalar {
  const v = scores.length;
  const shape = scores[0]?.shape.join();
  const bad = codes.find((c) => !(c.crop >= 0 && c.crop < v) || c.codes.shape.join() !== shape);
  if (v < 2 || codes.length < 1 || bad || scores.some((s) => s.shape.join() !== shape)) {
    throw new ContractError(
      `swappedPredictionLoss: ${v} crops' scores [${shape}], codes of crops ${codes.map((c) => c.crop).join(', ')}`,
      { hint: 'pass >= 2 crops of [B, K] scores and codes [B, K] of crops among them' },
    );
  }
  return tf.tidy(() => {
    const logProbs = scores.map((s) => tf.logSoftmax(tf.div(s, temperature))); // [B, K] each
    const terms = codes.map(({ crop, codes: q }) => {
      const others = logProbs.filter((_, i) => i !== crop);
      const ce = others.map((lp) => tf.neg(tf.mean(tf.sum(tf.mul(q, lp), 1))));
      return tf.div(tf.addN(ce), v - 1);
    });
    return tf.div(tf.addN(terms), codes.length) as tf.Scalar;
  });
}

/**
 * What a 'swapped-prediction' loss takes: every crop's prototype scores [B, K]
 * (with gradient), and for each global crop the scores its codes are computed
 * from ([M + B, K]: a queue's M rows first, then the batch's B rows; only the
 * batch's rows' codes are used).
 */
export interface SwappedPredictionInput {
  scores: readonly tf.Tensor2D[];
  targets: readonly { crop: number; scores: tf.Tensor2D }[];
  /** tau of the softmax over prototypes (0.1 in SwAV). */
  temperature: number;
  collectives?: Collectives;
}

/** A loss of kind 'swapped-prediction' (SwAV): codes by Sinkhorn-Knopp, predicted from the other crops. */
export interface SwappedPredictionLoss extends Loss {
  readonly kind: 'swapped-prediction';
  compute(input: SwappedPredictionInput): { loss: tf.Scalar };
}

/**
 * SwAV's loss: `sinkhornKnopp` codes of each target (the last B rows kept),
 * then `swappedPredictionLoss`.
 */
export function swavLoss(settings: Omit<SinkhornSettings, 'collectives'>): SwappedPredictionLoss {
  return {
    name: 'swav',
    kind: 'swapped-prediction',
    compute: ({ scores, targets, temperature, collectives }) => {
      const b = scores[0]?.shape[0] ?? 0;
      return tf.tidy(() => {
        const codes = targets.map(({ crop, scores: s }) => {
          const q = sinkhornKnopp(s, { ...settings, ...(collectives ? { collectives } : {}) });
          const rows = q.shape[0];
          return { crop, codes: rows === b ? q : q.slice([rows - b, 0], [b, q.shape[1]]) };
        });
        return { loss: swappedPredictionLoss(scores, codes, temperature) };
      });
    },
  };
}

/**
 * SwAV's prototypes C: a linear layer without bias from the D-wide embedding to
 * K prototype scores (`nn.Linear(D, K, bias=False)`, its weight kept [D, K] as
 * every Linear here, torch's [K, D] transposed), initialised as nn.Linear's
 * (uniform in +-1/sqrt(D)). `normalize` scales each prototype to unit length, as
 * the official code does before every step (a weight update outside the tape).
 */
export class Prototypes implements Head {
  /** [D, K]: column k is prototype c_k. */
  readonly weights: tf.Variable<tf.Rank.R2>;

  constructor(
    readonly inDim: number,
    readonly outDim: number,
    rng: Rng,
  ) {
    const bound = 1 / Math.sqrt(inDim);
    const init = rng.uniformArray(inDim * outDim, -bound, bound);
    this.weights = tf.variable(tf.tensor2d(init, [inDim, outDim]), true);
  }

  /** Scores [N, K] of embeddings [N, D]: z . c_k. */
  apply(z: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(z, this.weights);
  }

  /** Each prototype (column) to unit L2 norm (F.normalize(w, dim=1) on torch's [K, D]); no gradient. */
  normalize(): void {
    tf.tidy(() => {
      const norm = tf.maximum(tf.norm(this.weights, 'euclidean', 0, true), 1e-12);
      this.weights.assign(tf.div(this.weights, norm));
    });
  }

  parameters(): tf.Variable[] {
    return [this.weights];
  }

  namedVariables(): ReadonlyMap<string, tf.Variable> {
    return new Map([['prototypes/w', this.weights]]);
  }

  dispose(): void {
    this.weights.dispose();
  }
}

/**
 * SwAV's queue length: `length` rounded down to a multiple of the global batch
 * (main_swav.py's `queue_length -= queue_length % (batch_size * world_size)`).
 * @throws ConfigError (strategy.queueLength) when it is shorter than one batch.
 */
export function swavQueueRows(length: number, batch: number): number {
  const rounded = length - (length % batch);
  if (length > 0 && rounded === 0) {
    throw new ConfigError('strategy.queueLength', `${length} rows hold no batch of ${batch}`, {
      hint: `use 0 (no queue) or a multiple of optim.batchSize (${batch})`,
    });
  }
  return rounded;
}

/**
 * SwAV's queue of past embeddings for small batches (main_swav.py): rows of the
 * global crops' embeddings (`width` = crops x D, one row per sample), FIFO. The
 * queue is read only once it is full (the official code waits until its last
 * row is non-zero), so codes are never computed from its random initial rows.
 * Its rows and how many were ever enqueued are checkpointed.
 *
 * Data-parallel: every worker enqueues every worker's rows (gathered), so every
 * worker holds the same queue (a checkpoint from rank 0 resumes them all), and
 * `workerRows` is this worker's 1/N share: the shares together are the rows the
 * official per-worker queues of M / N local rows hold together.
 */
export class EmbeddingQueue implements Stateful {
  readonly rows: KeyQueue;
  private enqueued = 0;

  constructor(
    length: number,
    width: number,
    rng: Rng,
    private readonly collectives: Collectives = singleProcess,
  ) {
    this.rows = new KeyQueue(length, width, rng);
  }

  /** Whether `length` rows have been enqueued (the queue holds no initial row). */
  get full(): boolean {
    return this.enqueued >= this.rows.size;
  }

  /** [M, width] the queue's rows (a snapshot; do not dispose). */
  get embeddings(): tf.Tensor2D {
    return this.rows.keys;
  }

  /** [M / N, width]: this worker's share of the rows (all of them on one process). */
  workerRows(): tf.Tensor2D {
    const { rank, worldSize } = this.collectives;
    const share = this.rows.size / worldSize;
    return worldSize === 1 ? this.rows.keys : this.rows.keys.slice([rank * share, 0], [share, -1]);
  }

  /** Enqueues this worker's rows [B, width] and, data-parallel, every other worker's. */
  enqueue(rows: tf.Tensor2D): void {
    const { worldSize } = this.collectives;
    const all = worldSize > 1 ? this.collectives.allGather(rows, { sameShape: true }) : rows;
    this.rows.enqueue(all);
    this.enqueued = Math.min(this.rows.size, this.enqueued + all.shape[0]);
    if (all !== rows) all.dispose();
  }

  state(): StateTensors {
    const s = this.rows.state();
    return { tensors: s.tensors, values: { ...s.values, enqueued: this.enqueued } };
  }

  /** @throws StateError when the rows or counters do not fit this queue. */
  loadState(state: StateTensors): void {
    const enqueued = state.values.enqueued;
    if (typeof enqueued !== 'number' || enqueued < 0 || enqueued > this.rows.size) {
      throw new StateError(`saved queue fill ${String(enqueued)} is out of range`, {
        hint: 'resume with the same strategy.queueLength as the saved run',
      });
    }
    this.rows.loadState(state);
    this.enqueued = enqueued;
  }

  dispose(): void {
    this.rows.dispose();
  }
}
