import { createServer } from 'node:net';
import { DistributedError } from '@contrast/core';

/**
 * A data-parallel cluster as TensorFlow describes it: one job, `worker`, whose
 * task i listens on `workers[i]` ("host:port"); this process is task `rank`.
 */
export interface ClusterSpec {
  /** Every worker's "host:port", in rank order. */
  readonly workers: readonly string[];
  /** This process's index into `workers`. */
  readonly rank: number;
}

const ADDRESS = /^(?<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(?<port>\d{1,5})$/;

/** The port of a "host:port" address (IPv6 hosts in brackets). */
export function addressPort(address: string): number {
  return Number(ADDRESS.exec(address)?.groups?.port);
}

/**
 * Checks a cluster: at least one worker, every address "host:port" with a port
 * in 1..65535, no address twice, a rank in 0..N-1.
 * @param source names the input in errors (e.g. `TF_CONFIG`, `--cluster`).
 * @throws DistributedError naming the field and the fix.
 */
export function validateCluster(spec: ClusterSpec, source: string): ClusterSpec {
  const { workers, rank } = spec;
  if (workers.length === 0) {
    throw new DistributedError(`${source}: the cluster has no worker`, {
      hint: 'list every worker as host:port, rank 0 first',
    });
  }
  workers.forEach((w, i) => {
    const port = addressPort(w);
    if (!ADDRESS.test(w) || !(port >= 1 && port <= 65535)) {
      throw new DistributedError(`${source}: worker ${i} '${w}' is not host:port`, {
        hint: 'write each worker as host:port with a port in 1..65535, e.g. 10.0.0.2:23456',
      });
    }
    const first = workers.indexOf(w);
    if (first !== i) {
      throw new DistributedError(`${source}: workers ${first} and ${i} are both '${w}'`, {
        hint: 'give each worker its own host:port',
      });
    }
  });
  if (!Number.isInteger(rank) || rank < 0 || rank >= workers.length) {
    throw new DistributedError(
      `${source}: rank ${rank} is not one of the ${workers.length} workers (0..${workers.length - 1})`,
      { hint: `set this process's rank to an integer in 0..${workers.length - 1}` },
    );
  }
  return { workers: [...workers], rank };
}

/**
 * The cluster of TensorFlow's standard `TF_CONFIG` variable (what
 * MultiWorkerMirroredStrategy reads):
 * `{"cluster":{"worker":["h0:p0","h1:p1"]},"task":{"type":"worker","index":1}}`.
 * Only a `worker` job is supported (no chief, no parameter servers).
 * @throws DistributedError naming the TF_CONFIG field that is wrong.
 */
export function clusterFromTfConfig(json: string): ClusterSpec {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (e) {
    throw new DistributedError(`TF_CONFIG is not JSON: ${(e as Error).message}`, {
      hint: 'set TF_CONFIG=\'{"cluster":{"worker":["h0:p","h1:p"]},"task":{"type":"worker","index":0}}\'',
      cause: e,
    });
  }
  const cfg = doc as {
    cluster?: Record<string, unknown>;
    task?: { type?: unknown; index?: unknown };
  };
  const jobs = Object.keys(cfg?.cluster ?? {});
  const workers = cfg?.cluster?.worker;
  if (!Array.isArray(workers) || !workers.every((w) => typeof w === 'string')) {
    throw new DistributedError('TF_CONFIG.cluster.worker must be a list of "host:port" strings', {
      hint: "set TF_CONFIG.cluster.worker to every worker's host:port, rank 0 first",
    });
  }
  const other = jobs.filter((j) => j !== 'worker');
  if (other.length > 0) {
    throw new DistributedError(
      `TF_CONFIG.cluster has jobs ${other.join(', ')}: only 'worker' is supported`,
      { hint: 'list every process under cluster.worker (data-parallel workers, no chief or ps)' },
    );
  }
  if (cfg.task?.type !== 'worker') {
    throw new DistributedError(
      `TF_CONFIG.task.type is ${JSON.stringify(cfg.task?.type)}, not "worker"`,
      { hint: 'set TF_CONFIG.task to {"type":"worker","index":<this worker\'s rank>}' },
    );
  }
  const index = cfg.task.index;
  if (typeof index !== 'number') {
    throw new DistributedError(`TF_CONFIG.task.index is ${JSON.stringify(index)}, not a number`, {
      hint: "set TF_CONFIG.task.index to this worker's rank",
    });
  }
  return validateCluster({ workers: workers as string[], rank: index }, 'TF_CONFIG.task.index');
}

/**
 * The cluster of `--cluster host:port,host:port --rank i`.
 * @throws DistributedError naming the flag that is wrong.
 */
export function clusterFromFlags(cluster: string, rank: string | number): ClusterSpec {
  const workers = cluster
    .split(',')
    .map((w) => w.trim())
    .filter((w) => w !== '');
  const r = typeof rank === 'number' ? rank : /^\d+$/.test(rank.trim()) ? Number(rank) : NaN;
  if (Number.isNaN(r)) {
    throw new DistributedError(`--rank '${rank}' is not a non-negative integer`, {
      hint: `pass --rank i with i in 0..${Math.max(workers.length - 1, 0)}`,
    });
  }
  return validateCluster({ workers, rank: r }, '--cluster/--rank');
}

/**
 * The cluster to join, by precedence: the `--cluster`/`--rank` flags, then
 * `TF_CONFIG`; undefined when neither is set (a single process).
 * @throws DistributedError when only one of the two flags is given, or either source is invalid.
 */
export function resolveCluster(
  flags: { cluster?: string; rank?: string | number },
  env: NodeJS.ProcessEnv = process.env,
): ClusterSpec | undefined {
  if ((flags.cluster === undefined) !== (flags.rank === undefined)) {
    throw new DistributedError('--cluster and --rank go together', {
      hint: '--cluster host:port,host:port --rank i (or set TF_CONFIG instead)',
    });
  }
  if (flags.cluster !== undefined) return clusterFromFlags(flags.cluster, flags.rank!);
  const tfConfig = env.TF_CONFIG;
  return tfConfig && tfConfig.trim() !== '' ? clusterFromTfConfig(tfConfig) : undefined;
}

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolvePort(address.port) : reject(address),
      );
    });
  });
}

/**
 * N "127.0.0.1:port" addresses on distinct free ports, for `--workers N` on one
 * machine (a loopback cluster: see the README's security note). A port is free
 * when chosen; another process could still take it before TensorFlow binds it,
 * which `joinCluster` then reports.
 */
export async function loopbackCluster(n: number): Promise<string[]> {
  if (!Number.isInteger(n) || n < 1) {
    throw new DistributedError(`a loopback cluster needs a positive number of workers, got ${n}`, {
      hint: 'pass --workers N with N >= 1',
    });
  }
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports].map((p) => `127.0.0.1:${p}`);
}

/**
 * Resolves when `port` can be bound on every interface (TensorFlow's gRPC server
 * binds 0.0.0.0:port); checked before starting it, because TensorFlow then says
 * only "Could not start gRPC server" (and logs the port to stderr).
 * @throws DistributedError naming the port and what to do.
 */
export function assertPortFree(port: number, rank: number): Promise<void> {
  return new Promise((done, reject) => {
    const server = createServer();
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new DistributedError(
          `worker ${rank} cannot listen on port ${port}: ${e.code === 'EADDRINUSE' ? 'the address is in use' : e.message}`,
          {
            hint: 'stop what holds the port (a worker of an earlier run?) or give this worker another port',
            cause: e,
          },
        ),
      ),
    );
    server.listen({ port, exclusive: true }, () => server.close(() => done()));
  });
}
