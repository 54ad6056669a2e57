import type { ClusterSpec } from './cluster.js';

/**
 * tensorflow.ServerDef in protobuf's wire format, encoded by hand: five fields
 * of three messages do not justify a protobuf runtime and TensorFlow's .proto
 * files (which its wheel does not ship). Field numbers as in the wheel's
 * generated headers (tensorflow_server.pb.h, cluster.pb.h, config.pb.h):
 *   ServerDef { cluster = 1; job_name = 2; task_index = 3; default_session_config = 4; protocol = 5 }
 *   ClusterDef { job = 1 }   JobDef { name = 1; map<int32, string> tasks = 2 }
 *   ConfigProto { experimental = 16 }   ConfigProto.Experimental { collective_group_leader = 1 }
 */
type Bytes = number[];

function varint(out: Bytes, value: number): void {
  let v = value;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

/** A length-delimited field (wire type 2): a string or an embedded message. */
function bytesField(out: Bytes, field: number, value: string | Bytes): void {
  const bytes = typeof value === 'string' ? [...Buffer.from(value, 'utf8')] : value;
  varint(out, (field << 3) | 2);
  varint(out, bytes.length);
  out.push(...bytes);
}

/** A varint field (wire type 0). */
function intField(out: Bytes, field: number, value: number): void {
  varint(out, field << 3);
  varint(out, value);
}

/** The one job of a data-parallel cluster. */
export const JOB_NAME = 'worker';

/** TensorFlow's name of worker `rank`'s task, e.g. for a peer health check. */
export function taskName(rank: number): string {
  return `/job:${JOB_NAME}/replica:0/task:${rank}`;
}

/**
 * The ServerDef `enableCollectiveOps` takes: a single `worker` job over
 * `spec.workers`, this process as task `spec.rank`, gRPC, and task 0 as the
 * collective group leader (it resolves the group when the first collective runs,
 * as MultiWorkerMirroredStrategy's legacy group resolution does).
 */
export function encodeServerDef(spec: ClusterSpec): Uint8Array {
  const job: Bytes = [];
  bytesField(job, 1, JOB_NAME);
  spec.workers.forEach((address, index) => {
    const entry: Bytes = []; // map entry: key = 1, value = 2
    intField(entry, 1, index);
    bytesField(entry, 2, address);
    bytesField(job, 2, entry);
  });
  const cluster: Bytes = [];
  bytesField(cluster, 1, job);
  const experimental: Bytes = [];
  bytesField(experimental, 1, taskName(0));
  const config: Bytes = [];
  bytesField(config, 16, experimental);

  const serverDef: Bytes = [];
  bytesField(serverDef, 1, cluster);
  bytesField(serverDef, 2, JOB_NAME);
  intField(serverDef, 3, spec.rank);
  bytesField(serverDef, 4, config);
  bytesField(serverDef, 5, 'grpc');
  return Uint8Array.from(serverDef);
}
