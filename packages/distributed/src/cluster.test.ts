import { describe, expect, it } from 'vitest';
import { DistributedError } from '@contrast/core';
import {
  clusterFromFlags,
  clusterFromTfConfig,
  loopbackCluster,
  resolveCluster,
  validateCluster,
} from './cluster.js';
import { configHashWords } from './join.js';
import { encodeServerDef } from './server-def.js';

const tfConfig = (workers: unknown, task: unknown, extra: object = {}) =>
  JSON.stringify({ cluster: { worker: workers, ...extra }, task });

describe('cluster', () => {
  it("reads TensorFlow's TF_CONFIG", () => {
    expect(
      clusterFromTfConfig(
        tfConfig(['10.0.0.1:2222', '10.0.0.2:2222'], { type: 'worker', index: 1 }),
      ),
    ).toEqual({ workers: ['10.0.0.1:2222', '10.0.0.2:2222'], rank: 1 });
  });

  it('refuses a bad TF_CONFIG with a coded error naming the field', () => {
    const cases: [string, RegExp][] = [
      ['{', /TF_CONFIG is not JSON/],
      [tfConfig('h:1', { type: 'worker', index: 0 }), /TF_CONFIG\.cluster\.worker must be a list/],
      [
        tfConfig(['h:1'], { type: 'worker', index: 0 }, { chief: ['h:2'] }),
        /jobs chief: only 'worker'/,
      ],
      [tfConfig(['h:1'], { type: 'chief', index: 0 }), /TF_CONFIG\.task\.type is "chief"/],
      [
        tfConfig(['h:1'], { type: 'worker', index: '0' }),
        /TF_CONFIG\.task\.index is "0", not a number/,
      ],
      [
        tfConfig(['h:1', 'h:2'], { type: 'worker', index: 2 }),
        /TF_CONFIG\.task\.index: rank 2 is not one of the 2 workers \(0\.\.1\)/,
      ],
      [tfConfig(['h:1', 'h'], { type: 'worker', index: 0 }), /worker 1 'h' is not host:port/],
      [
        tfConfig(['h:1', 'h:70000'], { type: 'worker', index: 0 }),
        /worker 1 'h:70000' is not host:port/,
      ],
      [tfConfig(['h:1', 'h:1'], { type: 'worker', index: 0 }), /workers 0 and 1 are both 'h:1'/],
    ];
    for (const [json, message] of cases) {
      const e = (() => {
        try {
          clusterFromTfConfig(json);
        } catch (error) {
          return error as DistributedError;
        }
        throw new Error(`accepted ${json}`);
      })();
      expect(e).toBeInstanceOf(DistributedError);
      expect(e.code).toBe('CONTRAST_DISTRIBUTED');
      expect(e.message).toMatch(message);
      expect(e.hint).toBeTruthy();
    }
  });

  it('reads --cluster/--rank, which win over TF_CONFIG', () => {
    expect(clusterFromFlags('a:1, [::1]:2', '1')).toEqual({ workers: ['a:1', '[::1]:2'], rank: 1 });
    expect(() => clusterFromFlags('a:1,b:2', 'one')).toThrow(
      /--rank 'one' is not a non-negative integer/,
    );
    const env = { TF_CONFIG: tfConfig(['t:1'], { type: 'worker', index: 0 }) };
    expect(resolveCluster({ cluster: 'f:1,f:2', rank: 0 }, env)).toEqual({
      workers: ['f:1', 'f:2'],
      rank: 0,
    });
    expect(resolveCluster({}, env)).toEqual({ workers: ['t:1'], rank: 0 });
    expect(resolveCluster({}, {})).toBeUndefined();
    expect(() => resolveCluster({ cluster: 'a:1' }, {})).toThrow(
      /--cluster and --rank go together/,
    );
    expect(() => validateCluster({ workers: [], rank: 0 }, 'x')).toThrow(
      /x: the cluster has no worker/,
    );
  });

  it('a loopback cluster has N distinct 127.0.0.1 ports', async () => {
    const workers = await loopbackCluster(3);
    expect(workers).toHaveLength(3);
    expect(new Set(workers).size).toBe(3);
    for (const w of workers) expect(w).toMatch(/^127\.0\.0\.1:\d+$/);
    await expect(loopbackCluster(0)).rejects.toThrow(/--workers N with N >= 1/);
  });
});

describe('ServerDef', () => {
  it('encodes the protobuf wire format field by field (hand-derived bytes)', () => {
    const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));
    const leader = ascii('/job:worker/replica:0/task:0'); // 28 bytes
    const entry = [0x08, 0x00, 0x12, 0x03, ...ascii('h:1')]; // map entry {key: 0, value: "h:1"}
    const job = [0x0a, 0x06, ...ascii('worker'), 0x12, entry.length, ...entry]; // JobDef {name, tasks}
    const cluster = [0x0a, job.length, ...job]; // ClusterDef {job}
    const experimental = [0x0a, leader.length, ...leader]; // {collective_group_leader}
    const config = [0x82, 0x01, experimental.length, ...experimental]; // ConfigProto field 16: tag 130
    const expected = [
      ...[0x0a, cluster.length, ...cluster], // ServerDef.cluster = 1
      ...[0x12, 0x06, ...ascii('worker')], // job_name = 2
      ...[0x18, 0x00], // task_index = 3
      ...[0x22, config.length, ...config], // default_session_config = 4
      ...[0x2a, 0x04, ...ascii('grpc')], // protocol = 5
    ];
    expect([...encodeServerDef({ workers: ['h:1'], rank: 0 })]).toEqual(expected);
    // a task index past 127 takes a two-byte varint
    const big = encodeServerDef({
      workers: Array.from({ length: 300 }, (_, i) => `h:${i + 1}`),
      rank: 299,
    });
    expect(Buffer.from(big).indexOf(Buffer.from([0x18, 0xab, 0x02]))).toBeGreaterThan(0);
  });

  it('a config hash is two int32 words of its sha256, equal for equal configs only', () => {
    expect(configHashWords('a')).toEqual(configHashWords('a'));
    expect(configHashWords('a')).not.toEqual(configHashWords('b'));
    // sha256("abc") = ba7816bf 8f01cfea ...: little-endian int32s of those bytes
    expect(configHashWords('abc')).toEqual([
      Buffer.from('ba7816bf', 'hex').readInt32LE(0),
      Buffer.from('8f01cfea', 'hex').readInt32LE(0),
    ]);
  });
});
