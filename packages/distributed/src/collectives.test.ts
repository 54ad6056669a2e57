import { createServer, type Server } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DistributedError } from '@contrast/core';
import { loopbackCluster } from './cluster.js';
import { joinCluster } from './join.js';
import { assertBuilt, startWorkers, type Worker } from './test-utils/workers.js';

// Every test starts real worker processes on 127.0.0.1 (the built package) and ends them.
let running: Worker[] = [];
const start = (...args: Parameters<typeof startWorkers>) => {
  const workers = startWorkers(...args);
  running.push(...workers);
  return workers;
};
afterEach(async () => {
  for (const w of running) w.kill();
  await Promise.all(running.map((w) => w.exited));
  running = [];
});
beforeAll(() => assertBuilt());

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** What `ops` (testing/worker.ts) must print on worker `r` of `n`, from the closed forms. */
function expectedOps(n: number, r: number) {
  const mean = (f: (s: number) => number) => range(n).reduce((a, s) => a + f(s), 0) / n;
  const sum = (f: (s: number) => number) => range(n).reduce((a, s) => a + f(s), 0);
  // loss = sum_s sum(w_s * gathered), w_s[i, j] = (s + 1)(i + 1) + j: dloss/dx_r[k, j] = sum_s w_s[2r + k, j]
  const w = (s: number, i: number, j: number) => (s + 1) * (i + 1) + j;
  return {
    mean: [
      [mean((s) => s + 1), mean((s) => 10 * (s + 1))],
      [
        [mean((s) => s), mean((s) => -s)],
        [mean((s) => 2 * s), 0.5],
      ],
    ],
    sum: [
      [sum((s) => s + 1), sum((s) => 10 * (s + 1))],
      [
        [sum((s) => s), sum((s) => -s)],
        [sum((s) => 2 * s), 0.5 * n],
      ],
    ],
    gather: range(n).map((s) => [10 * s, 10 * s + 1]),
    ragged: range(n).flatMap((s) => range(s + 1).map(() => [s, s])),
    // stated equal shapes: the same rows with one collective instead of two
    gatherSameShape: range(n).map((s) => [10 * s, 10 * s + 1]),
    sameShapeCollectives: 1,
    gradient: [0, 1].map((k) => [0, 1, 2].map((j) => sum((s) => w(s, 2 * r + k, j)))),
    gradientSameShape: [0, 1].map((k) => [0, 1, 2].map((j) => sum((s) => w(s, 2 * r + k, j)))),
    gatheredForGradient: range(n).flatMap((s) => [
      [s, s + 1, s + 2],
      [1, 2, 3],
    ]),
    broadcast: [3.5, -2.5, 7],
    broadcastInt: [(n - 1) * 100, n - 1],
    waitFor: r === 0 ? 42 : null,
    // rank 0's work threw: rank 0 rethrows its error, the others get a coded one
    waitForFailure: r === 0 ? 'evaluation failed' : 'CONTRAST_DISTRIBUTED',
    leaked: 0,
  };
}

describe('TfCollectives across worker processes', () => {
  for (const n of [2, 3]) {
    it(`${n} workers: all-reduce, gathers in rank order, the gather's gradient, broadcast, waitFor, no leaks`, async () => {
      const workers = start(await loopbackCluster(n), { scenario: 'ops', timeoutSeconds: 2 });
      await Promise.all(workers.map((w) => w.line('done', 90_000)));
      workers.forEach((w, r) => {
        const got = w.merged();
        expect(got).toMatchObject(expectedOps(n, r));
        // rank 0 worked 2.5 s, longer than the 2 s timeout: the others waited without failing
        expect(got.waitedMs as number).toBeGreaterThanOrEqual(r === 0 ? 2500 : 0);
      });
    });
  }

  it("refuses a worker with another experiment's config on every worker, naming it", async () => {
    const workers = start(await loopbackCluster(3), { scenario: 'join' }, (r) => ({
      configHash: r === 2 ? 'another config' : 'the config',
    }));
    for (const w of workers) {
      const { joined, error } = (await w.line('joined', 90_000)) as {
        joined: boolean;
        error: { code: string; message: string };
      };
      expect(joined).toBe(false);
      expect(error.code).toBe('CONTRAST_DISTRIBUTED');
      expect(error.message).toMatch(/worker 2 runs another experiment's config/);
    }
  });

  it('a SIGKILLed peer: the survivor fails within the timeout naming the lost worker, then at once', async () => {
    const timeoutSeconds = 3;
    const [survivor, victim] = start(await loopbackCluster(2), { scenario: 'die', timeoutSeconds });
    await Promise.all([survivor!.line('event', 90_000), victim!.line('event', 90_000)]);
    victim!.kill('SIGKILL');
    await victim!.exited;
    survivor!.child.stdin!.write('go\n');
    const { error, elapsedMs } = (await survivor!.line('error', 30_000)) as {
      error: { code: string; message: string; lostRanks: number[]; hint: string };
      elapsedMs: number;
    };
    expect(error.code).toBe('CONTRAST_DISTRIBUTED');
    expect(error.lostRanks).toEqual([1]);
    expect(error.message).toMatch(/lost worker 1 \(127\.0\.0\.1:\d+\)/);
    expect(error.hint).toMatch(/--resume/);
    expect(elapsedMs).toBeLessThan((timeoutSeconds + 5) * 1000);
    const again = (await survivor!.line('again')) as { again: { code: string }; elapsedMs: number };
    expect(again.again.code).toBe('CONTRAST_DISTRIBUTED');
    expect(again.elapsedMs).toBeLessThan(1000);
  });

  it('a worker that never starts: the join fails within its timeout, naming it', async () => {
    const cluster = await loopbackCluster(2);
    const [alone] = start(cluster, { scenario: 'join', joinTimeoutSeconds: 3 }, undefined, [0]);
    const t0 = Date.now();
    const { error } = (await alone!.line('joined', 60_000)) as {
      error: { code: string; message: string; lostRanks: number[] };
    };
    expect(error.code).toBe('CONTRAST_DISTRIBUTED');
    expect(error.lostRanks).toEqual([1]);
    expect(error.message).toContain(`worker 1 (${cluster[1]}) did not join`);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

describe('joinCluster', () => {
  it('refuses a port in use before starting TensorFlow, naming the port', async () => {
    const held: Server = createServer();
    await new Promise<void>((done) => held.listen(0, done));
    const port = (held.address() as { port: number }).port;
    try {
      const joining = joinCluster({
        cluster: [`127.0.0.1:${port}`, '127.0.0.1:1'],
        rank: 0,
        configHash: 'x',
      });
      await expect(joining).rejects.toThrow(DistributedError);
      await expect(joining).rejects.toThrow(new RegExp(`port ${port}: the address is in use`));
    } finally {
      held.close();
    }
  });

  it('refuses a bad cluster or timeout before anything starts', async () => {
    await expect(
      joinCluster({ cluster: ['127.0.0.1:5000'], rank: 1, configHash: 'x' }),
    ).rejects.toThrow(/rank 1 is not one of the 1 workers/);
    await expect(
      joinCluster({ cluster: ['127.0.0.1:5000'], rank: 0, configHash: 'x', timeoutSeconds: 0 }),
    ).rejects.toThrow(/timeoutSeconds must be a positive number, got 0/);
  });
});
