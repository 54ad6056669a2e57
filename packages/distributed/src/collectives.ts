import * as tf from '@tensorflow/tfjs';
import {
  ContractError,
  DistributedError,
  type Collectives,
  type GatherOptions,
} from '@contrast/core';
import type { CollectiveCommunication } from '@contrast/backend';
import type { ClusterSpec } from './cluster.js';
import { type CollectiveBackend, type OpAttr, TF_UNAVAILABLE } from './native.js';
import { taskName } from './server-def.js';

export interface TfCollectivesOptions {
  /**
   * Every collective's timeout in seconds (TensorFlow's `timeout_seconds`): a
   * collective waiting longer for a peer fails instead of hanging. Default 60.
   */
  timeoutSeconds?: number;
  /** The timeout of `waitFor`'s barrier, for rank-0-only work (evaluation, checkpoints). Default 3600. */
  waitTimeoutSeconds?: number;
  /** How long a peer has to answer the health check after a failed collective, in ms. Default 5000. */
  healthCheckMs?: number;
  /**
   * TensorFlow's `communication_hint`: 'nccl' between GPUs, 'ring' between CPU
   * processes (collectiveCommunication of the backend; joinCluster sets it). Default 'auto'.
   */
  communication?: CollectiveCommunication | 'auto';
}

/** Which collective failed, to word the error: the join handshake or a later one. */
type Phase = 'join' | 'run';

/** The dimensions of a gathered tensor's shape sent ahead of it: rank (ndim) then up to 8 sizes. */
const MAX_GATHER_RANK = 8;

/**
 * `Collectives` on TensorFlow's collective ops (CollectiveReduceV2,
 * CollectiveGatherV2, CollectiveBcastSendV2/RecvV2: what
 * tf.distribute.MultiWorkerMirroredStrategy runs on), executed through tfjs-node's
 * own op path on tfjs tensors, without copies. Build it with `joinCluster`.
 *
 * Collectives are matched across workers by an instance key that every worker
 * advances by one per collective, so every worker must issue the same
 * collectives in the same order. Every collective carries `timeoutSeconds`; when
 * one fails, the peers' health is checked, collectives are aborted (every later
 * one fails at once) and a `DistributedError` names the workers that did not
 * answer. The group is fixed: a run that lost a worker restarts from its last
 * checkpoint.
 */
export class TfCollectives implements Collectives {
  readonly rank: number;
  readonly worldSize: number;
  readonly timeoutSeconds: number;
  readonly waitTimeoutSeconds: number;
  readonly communication: CollectiveCommunication | 'auto';
  private readonly healthCheckMs: number;
  private readonly workers: readonly string[];
  /** One group (all workers) with one key; instance keys count collectives from 1. */
  private readonly groupKey = 1;
  private nextInstanceKey = 1;
  private failure: DistributedError | undefined;

  constructor(
    private readonly backend: CollectiveBackend,
    cluster: ClusterSpec,
    options: TfCollectivesOptions = {},
  ) {
    this.rank = cluster.rank;
    this.worldSize = cluster.workers.length;
    this.workers = cluster.workers;
    const resolved = resolveCollectivesOptions(options);
    this.timeoutSeconds = resolved.timeoutSeconds;
    this.waitTimeoutSeconds = resolved.waitTimeoutSeconds;
    this.healthCheckMs = resolved.healthCheckMs;
    this.communication = resolved.communication;
  }

  /** How many collectives this worker has issued (equal on every worker between collectives). */
  get collectivesIssued(): number {
    return this.nextInstanceKey - 1;
  }

  allReduceMean(tensors: tf.Tensor[]): tf.Tensor[] {
    return this.allReduce(tensors, 'Div');
  }

  allReduceSum(tensors: tf.Tensor[]): tf.Tensor[] {
    return this.allReduce(tensors, 'Id');
  }

  /**
   * Rows of every worker in rank order; any first dimension (unequal ones are
   * padded to the largest for the gather, then cut out). Costs two collectives,
   * the shapes then the data, or one with `options.sameShape` (the caller
   * states that every worker's shape is x's).
   * @throws ContractError when the workers' shapes differ beyond axis 0 (on
   *   every worker alike; not checked with `sameShape`, which the caller vouches for).
   */
  allGather<T extends tf.Tensor>(x: T, options: GatherOptions = {}): T {
    return this.gatherRows(x, this.rowsOf(x, options)) as T;
  }

  /** allGather with a gradient (see Collectives); `options` as allGather's. */
  allGatherWithGradient<T extends tf.Tensor>(x: T, options: GatherOptions = {}): T {
    const rows = this.rowsOf(x, options);
    const offset = rows.slice(0, this.rank).reduce((a, b) => a + b, 0);
    const mine = rows[this.rank]!;
    // customGrad passes (x, save): only x is used
    const gather = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
      value: this.gatherRows(args[0] as tf.Tensor, rows),
      // dy: [sum_r n_r, ...]; every worker's loss reaches this worker's rows
      gradFunc: (dy: tf.Tensor) =>
        tf.tidy(() => {
          const [total] = this.allReduce([dy], 'Id');
          return total!.slice(offset, mine);
        }),
    }));
    return gather(x) as T;
  }

  broadcast<T extends tf.Tensor>(x: T, root = 0): T {
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) {
      throw new ContractError(`broadcast: root ${root} is not a worker (0..${this.worldSize - 1})`);
    }
    if (this.rank === root) return this.collective('CollectiveBcastSendV2', [x], x.dtype) as T;
    const b = this.backend.binding;
    return tf.tidy(() =>
      this.collective(
        'CollectiveBcastRecvV2',
        [],
        x.dtype,
        [{ name: 'Tshape', type: b.TF_ATTR_TYPE, value: b.TF_INT32 }],
        [tf.tensor1d(x.shape, 'int32')],
      ),
    ) as T;
  }

  /**
   * Returns when every worker has called it. `timeoutSeconds` defaults to the
   * collectives' timeout.
   * @throws DistributedError when a worker does not arrive in time.
   */
  barrier(timeoutSeconds = this.timeoutSeconds): void {
    this.agree(false, timeoutSeconds);
  }

  /**
   * Runs `work` on worker `root` (default 0) while the others wait for it, e.g.
   * rank 0 evaluating or writing a checkpoint: the wait is one barrier with
   * `waitTimeoutSeconds` (default an hour) instead of the collectives' short
   * timeout, which a long evaluation would trip. A failure of `work` reaches
   * every worker: `root` rethrows it, the others throw a DistributedError.
   * The cost: a worker lost during the wait is noticed only when it ends.
   * @returns `work`'s result on `root`, undefined on the others.
   */
  async waitFor<R>(work: () => R | Promise<R>, root = 0): Promise<R | undefined> {
    let result: R | undefined;
    let error: unknown;
    let failed = false;
    if (this.rank === root) {
      try {
        result = await work();
      } catch (e) {
        [error, failed] = [e, true];
      }
    }
    const someoneFailed = this.agree(failed, this.waitTimeoutSeconds);
    if (failed) throw error;
    if (someoneFailed) {
      throw new DistributedError(`worker ${root}'s work failed while worker ${this.rank} waited`, {
        hint: `see worker ${root}'s error; then restart every worker with --resume`,
      });
    }
    return result;
  }

  /**
   * Gathers every worker's config hash (the join handshake; called by
   * `joinCluster`, the first collective, which also forms the group).
   * @returns every worker's two words, in rank order.
   */
  gatherConfigHashes(words: [number, number], timeoutSeconds: number): number[][] {
    return tf.tidy(() => {
      const mine = tf.tensor2d([words], [1, 2], 'int32');
      const all = this.collective('CollectiveGatherV2', [mine], 'int32', [], [], {
        timeoutSeconds,
        phase: 'join',
      });
      return all.arraySync() as number[][];
    });
  }

  /** True on every worker when any worker passes `flag` true: a barrier carrying one bit. */
  private agree(flag: boolean, timeoutSeconds: number): boolean {
    return tf.tidy(() => {
      const any = this.collective(
        'CollectiveReduceV2',
        [tf.scalar(flag ? 1 : 0)],
        'float32',
        this.reduceAttrs('Id'),
        [],
        {
          timeoutSeconds,
          phase: 'run',
        },
      );
      return any.dataSync()[0]! > 0;
    });
  }

  /** One fused all-reduce: flatten, concat, reduce, split (float32 only: gradients, metrics). */
  private allReduce(tensors: tf.Tensor[], finalOp: 'Div' | 'Id'): tf.Tensor[] {
    if (tensors.length === 0) return [];
    const other = tensors.find((t) => t.dtype !== 'float32');
    if (other) {
      throw new ContractError(
        `allReduce takes float32 tensors, got a ${other.dtype} [${other.shape}]`,
      );
    }
    return tf.tidy(() => {
      const flat =
        tensors.length === 1
          ? tensors[0]!.reshape([-1])
          : tf.concat(tensors.map((t) => t.reshape([-1])));
      const reduced = this.collective(
        'CollectiveReduceV2',
        [flat],
        'float32',
        this.reduceAttrs(finalOp),
      );
      const parts =
        tensors.length === 1
          ? [reduced]
          : tf.split(
              reduced,
              tensors.map((t) => t.size),
            );
      return parts.map((p, i) => p.reshape(tensors[i]!.shape));
    });
  }

  private reduceAttrs(finalOp: 'Div' | 'Id'): OpAttr[] {
    const b = this.backend.binding;
    return [
      { name: 'merge_op', type: b.TF_ATTR_STRING, value: 'Add' },
      { name: 'final_op', type: b.TF_ATTR_STRING, value: finalOp },
    ];
  }

  /**
   * Every worker's number of rows of its `x`: stated by the caller
   * (`sameShape`), else one small gather of the shapes, checked alike.
   */
  private rowsOf(x: tf.Tensor, options: GatherOptions): number[] {
    if (x.rank === 0 || x.rank > MAX_GATHER_RANK) {
      throw new ContractError(
        `allGather takes tensors of rank 1..${MAX_GATHER_RANK}, got [${x.shape}]`,
      );
    }
    if (options.sameShape) return new Array<number>(this.worldSize).fill(x.shape[0]!);
    const shapes = tf.tidy(() => {
      const mine = [x.rank, ...x.shape, ...new Array<number>(MAX_GATHER_RANK - x.rank).fill(0)];
      const all = this.collective(
        'CollectiveGatherV2',
        [tf.tensor2d([mine], undefined, 'int32')],
        'int32',
      );
      return (all.arraySync() as number[][]).map(([rank, ...dims]) => dims.slice(0, rank));
    });
    const inner = (s: number[]) => s.slice(1).join(',');
    const differ = shapes.findIndex((s) => inner(s) !== inner(x.shape) || s.length !== x.rank);
    if (differ >= 0) {
      throw new ContractError(
        `allGather: worker ${differ} gives [${shapes[differ]}] and worker ${this.rank} [${x.shape}]; every dimension but the first must match`,
      );
    }
    return shapes.map((s) => s[0]!);
  }

  /** The gather itself, given every worker's rows: [sum_r n_r, ...] in rank order. */
  private gatherRows(x: tf.Tensor, rows: number[]): tf.Tensor {
    const most = Math.max(...rows);
    if (rows.every((n) => n === most)) return this.collective('CollectiveGatherV2', [x], x.dtype);
    return tf.tidy(() => {
      const padding = x.shape.map(
        (_, d) => [0, d === 0 ? most - x.shape[0]! : 0] as [number, number],
      );
      const all = this.collective('CollectiveGatherV2', [tf.pad(x, padding)], x.dtype);
      return tf.concat(rows.map((n, r) => all.slice(r * most, n)));
    });
  }

  /**
   * One collective op on `inputs` followed by (group_size, group_key,
   * instance_key) and `extraInputs`. On failure: health checks, abort, a
   * DistributedError (and every later collective throws it at once).
   */
  private collective(
    op: string,
    inputs: tf.Tensor[],
    dtype: tf.DataType,
    attrs: OpAttr[] = [],
    extraInputs: tf.Tensor[] = [],
    how: { timeoutSeconds?: number; phase?: Phase } = {},
  ): tf.Tensor {
    if (this.failure) throw this.failure;
    const b = this.backend.binding;
    if (dtype !== 'float32' && dtype !== 'int32') {
      throw new ContractError(`${op} takes float32 or int32 tensors, got ${dtype}`);
    }
    const timeoutSeconds = how.timeoutSeconds ?? this.timeoutSeconds;
    const instanceKey = this.nextInstanceKey++;
    const keys = [this.worldSize, this.groupKey, instanceKey].map((k) => tf.scalar(k, 'int32'));
    try {
      return this.backend.executeSingleOutput(
        op,
        [
          { name: 'T', type: b.TF_ATTR_TYPE, value: dtype === 'float32' ? b.TF_FLOAT : b.TF_INT32 },
          { name: 'communication_hint', type: b.TF_ATTR_STRING, value: this.communication },
          { name: 'timeout_seconds', type: b.TF_ATTR_FLOAT, value: timeoutSeconds },
          ...attrs,
        ],
        [...inputs, ...keys, ...extraInputs],
      );
    } catch (e) {
      throw this.fail(op, instanceKey, timeoutSeconds, how.phase ?? 'run', e);
    } finally {
      tf.dispose(keys);
    }
  }

  /** The workers that do not answer a health check, in rank order. */
  private unreachablePeers(): number[] {
    const lost: number[] = [];
    for (let r = 0; r < this.worldSize; r++) {
      if (r === this.rank) continue;
      try {
        this.backend.binding.collectiveOpsCheckPeerHealth(taskName(r), this.healthCheckMs);
      } catch {
        lost.push(r);
      }
    }
    return lost;
  }

  private fail(
    op: string,
    instanceKey: number,
    timeoutSeconds: number,
    phase: Phase,
    cause: unknown,
  ): DistributedError {
    const tfMessage = tensorflowMessage(cause);
    const lost = this.unreachablePeers();
    const who = lost.map((r) => `worker ${r} (${this.workers[r]})`).join(', ');
    const where = `${op} #${instanceKey} on worker ${this.rank} of ${this.worldSize} (timeout ${timeoutSeconds} s)`;
    const message =
      phase === 'join'
        ? lost.length > 0
          ? `${who} did not join: ${where} failed: ${tfMessage}`
          : `the join handshake failed though every worker answers: ${where}: ${tfMessage}`
        : lost.length > 0
          ? `lost ${who}: unreachable after ${where} failed: ${tfMessage}`
          : `${where} failed though every worker answers (a worker slower than the timeout, or workers issuing different collectives): ${tfMessage}`;
    const hint =
      phase === 'join'
        ? 'start every worker with the same cluster (each with its own rank) within the join timeout; check the addresses, ports and firewall'
        : lost.length > 0
          ? 'the group is fixed: restart every worker with --resume to continue from the last checkpoint'
          : "raise the collectives' timeout if a worker is slow, then restart every worker with --resume";
    try {
      this.backend.binding.abortCollectiveOps(TF_UNAVAILABLE, message);
    } catch {
      /* nothing pending to abort */
    }
    this.failure = new DistributedError(message, { hint, cause, lostRanks: lost });
    return this.failure;
  }
}

/**
 * The options with their defaults.
 * @throws DistributedError naming an option that is not a positive number.
 */
export function resolveCollectivesOptions(
  options: TfCollectivesOptions,
): Required<TfCollectivesOptions> {
  return {
    timeoutSeconds: positive(options.timeoutSeconds ?? 60, 'timeoutSeconds'),
    waitTimeoutSeconds: positive(options.waitTimeoutSeconds ?? 3600, 'waitTimeoutSeconds'),
    healthCheckMs: positive(options.healthCheckMs ?? 5000, 'healthCheckMs'),
    communication: options.communication ?? 'auto',
  };
}

function positive(value: number, name: string): number {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new DistributedError(`${name} must be a positive number, got ${value}`, {
      hint: `set ${name} to a positive number`,
    });
  }
  return value;
}

/** The "Message: ..." line of the binding's error ("Invalid TF_Status: 4\nMessage: ..."). */
function tensorflowMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const m = /Message: (.*)/.exec(text);
  return (m?.[1] ?? text.split('\n')[0] ?? text).trim();
}
