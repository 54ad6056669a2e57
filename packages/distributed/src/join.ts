import { createHash } from 'node:crypto';
import { collectiveCommunication, initBackend } from '@contrast/backend';
import { DistributedError } from '@contrast/core';
import { addressPort, assertPortFree, validateCluster } from './cluster.js';
import {
  resolveCollectivesOptions,
  TfCollectives,
  type TfCollectivesOptions,
} from './collectives.js';
import { collectiveBackend } from './native.js';
import { encodeServerDef } from './server-def.js';

export interface JoinOptions extends TfCollectivesOptions {
  /** Every worker's "host:port", in rank order (the same list on every worker). */
  cluster: readonly string[];
  /** This process's index into `cluster`. */
  rank: number;
  /**
   * What must be equal on every worker for them to train one model together:
   * e.g. a digest of the resolved experiment config. Workers whose value
   * differs from worker 0's are refused.
   */
  configHash: string;
  /**
   * How long the join waits for every worker to start, in seconds (the first
   * collective forms the group, so it waits for the slowest starter). Default 120.
   */
  joinTimeoutSeconds?: number;
}

let joined: { workers: readonly string[]; rank: number } | undefined;

/** The two int32 words all-gathered for a config hash: the first 8 bytes of its sha256. */
export function configHashWords(configHash: string): [number, number] {
  const digest = createHash('sha256').update(configHash, 'utf8').digest();
  return [digest.readInt32LE(0), digest.readInt32LE(4)];
}

/**
 * Joins this process to a data-parallel cluster: checks the cluster and that
 * this worker's port is free, loads the native backend, starts TensorFlow's
 * gRPC server (collectives over NCCL on the GPU build, else TensorFlow's ring)
 * and enables collective ops on the backend's eager context (before
 * anything else runs on it), then the join handshake: every worker's config
 * hash is all-gathered and compared with worker 0's. Once per process.
 * @returns the collectives of this worker.
 * @throws DistributedError on a bad cluster, a port in use, a worker that does
 *   not join within `joinTimeoutSeconds` (named), or workers whose config hash
 *   differs from worker 0's (named: "another experiment's config").
 */
export async function joinCluster(options: JoinOptions): Promise<TfCollectives> {
  const spec = validateCluster({ workers: options.cluster, rank: options.rank }, 'joinCluster');
  if (joined) {
    throw new DistributedError(
      `this process already joined a cluster as worker ${joined.rank} of ${joined.workers.length}`,
      { hint: 'call joinCluster once per process; TensorFlow cannot leave a cluster' },
    );
  }
  resolveCollectivesOptions(options); // bad options are refused before the server starts
  const joinTimeout = options.joinTimeoutSeconds ?? 120;
  if (!(joinTimeout > 0)) {
    throw new DistributedError(`joinTimeoutSeconds must be a positive number, got ${joinTimeout}`, {
      hint: 'set joinTimeoutSeconds to a positive number',
    });
  }
  await assertPortFree(addressPort(spec.workers[spec.rank]!), spec.rank);
  const { name } = await initBackend();
  const backend = collectiveBackend();
  try {
    backend.binding.enableCollectiveOps(encodeServerDef(spec));
  } catch (e) {
    throw new DistributedError(
      `worker ${spec.rank} could not start TensorFlow's server on ${spec.workers[spec.rank]}: ${(e as Error).message}`,
      {
        hint: 'check that the address belongs to this machine and that nothing took its port since the check',
        cause: e,
      },
    );
  }
  joined = spec;
  // NCCL between the GPUs of the GPU build (one per worker), TensorFlow's ring between CPU processes
  const collectives = new TfCollectives(backend, spec, {
    ...options,
    communication: options.communication ?? collectiveCommunication(name),
  });
  checkConfigHashes(collectives, options.configHash, joinTimeout);
  return collectives;
}

/** The join handshake: every worker's config hash against worker 0's, the same verdict on every worker. */
function checkConfigHashes(
  collectives: TfCollectives,
  configHash: string,
  timeoutSeconds: number,
): void {
  const all = collectives.gatherConfigHashes(configHashWords(configHash), timeoutSeconds);
  const reference = all[0]!.join(',');
  const differing = all.flatMap((words, r) => (words.join(',') === reference ? [] : [r]));
  if (differing.length > 0) {
    throw new DistributedError(
      `worker${differing.length > 1 ? 's' : ''} ${differing.join(', ')} run${differing.length > 1 ? '' : 's'} another experiment's config: ${differing.length > 1 ? 'their config hashes differ' : 'its config hash differs'} from worker 0's`,
      {
        hint: 'start every worker with the same config file and --set overrides (only the rank may differ)',
      },
    );
  }
}
