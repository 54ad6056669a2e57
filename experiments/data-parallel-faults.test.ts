import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readBundle, tf } from '@contrast/core';
import { loopbackCluster } from '@contrast/distributed';
import { spawnCli, waitFor } from './cli.js';

/**
 * Faults of a data-parallel run (2 worker processes on a loopback cluster):
 * a lost worker stops the group within the collective timeout with a coded
 * error and loses nothing (the last checkpoint resumes bit for bit), a stop
 * signal to the launcher checkpoints once and resumes bit for bit, and a worker
 * with another experiment's config is refused when it joins.
 */
const root = mkdtempSync(join(tmpdir(), 'contrast-dp-faults-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** 24 steps of a tiny MoCo, checkpointed every 4 steps. */
function experiment(name: string, extra = ''): string {
  const file = join(root, `${name}.yaml`);
  writeFileSync(
    file,
    `name: ${name}
seed: 0
data: { trainSubset: 768 }
model: { encoder: convnet, width: 0.25, dim: 16 }
strategy: { name: momentum-queue, queueSize: 64 }
optim: { batchSize: 32, epochs: 1, lr: 0.05 }
eval: { knn: { every: 0, bankSize: 128, testSize: 64 }, baselines: false, alignUniform: 0, health: 0 }
checkpoint: { every: 4 }
tracking: { dir: ${join(root, name)} }
${extra}`,
  );
  return file;
}

const onlyRun = (dir: string) => join(dir, readdirSync(dir)[0]!);

function finalTensors(runPath: string): Record<string, Float32Array | Int32Array | Uint8Array> {
  const b = readBundle(join(runPath, 'state', 'final.bin'));
  const out = Object.fromEntries(
    Object.entries(b.tensors).map(([k, t]) => [k, t.dataSync() as Float32Array]),
  );
  tf.dispose(Object.values(b.tensors));
  return out;
}

function expectBitIdentical(a: string, b: string): void {
  const ta = finalTensors(a);
  const tb = finalTensors(b);
  expect(Object.keys(ta).sort()).toEqual(Object.keys(tb).sort());
  for (const k of Object.keys(tb)) {
    expect(Buffer.from(ta[k]!.buffer).equals(Buffer.from(tb[k]!.buffer)), k).toBe(true);
  }
}

describe('data-parallel faults', () => {
  let uninterrupted = '';

  it('an uninterrupted 2-worker run (the reference)', async () => {
    const p = spawnCli(['train', experiment('ref'), '--workers', '2', '--quiet']);
    expect(await p.done, p.stderr()).toBe(0);
    uninterrupted = onlyRun(join(root, 'ref'));
  }, 120_000);

  it('SIGKILL of rank 1: rank 0 stops with CONTRAST_DISTRIBUTED within the timeout + 5 s; --resume is bit-identical', async () => {
    const file = experiment('killed');
    const p = spawnCli(['train', file, '--workers', '2', '--collective-timeout', '5']);
    // rank 1's pid: the launcher's child whose command line has --rank 1
    expect(await waitFor(() => / 9\/24 /.test(p.stderr()), 120_000), p.stderr()).toBe(true);
    const rank1 = findWorker('--rank 1', file);
    expect(rank1, 'rank 1 is running').toBeGreaterThan(0);
    const t0 = Date.now();
    process.kill(rank1, 'SIGKILL');
    const code = await p.done;
    const seconds = (Date.now() - t0) / 1000;
    expect(code, p.stderr()).toBe(4);
    expect(p.stderr()).toContain('CONTRAST_DISTRIBUTED');
    expect(p.stderr()).toMatch(/rank 1/);
    expect(seconds).toBeLessThanOrEqual(5 + 5 + 3); // timeout + 5 s (+ the process's own exit)
    expect(findWorker('--rank 0', file)).toBe(0); // no worker outlives the group
    const runPath = onlyRun(join(root, 'killed'));
    const summary = JSON.parse(readFileSync(join(runPath, 'summary.json'), 'utf8')) as {
      status: string;
    };
    expect(summary.status).toBe('failed');
    const resumed = spawnCli(['train', '--resume', runPath, '--workers', '2', '--quiet']);
    expect(await resumed.done, resumed.stderr()).toBe(0);
    expectBitIdentical(runPath, uninterrupted);
  }, 240_000);

  it('SIGINT to the launcher: one checkpoint, exit 130, --resume bit-identical', async () => {
    const file = experiment('stopped');
    const p = spawnCli(['train', file, '--workers', '2']);
    expect(await waitFor(() => / 6\/24 /.test(p.stderr()), 120_000), p.stderr()).toBe(true);
    p.proc.kill('SIGINT');
    expect(await p.done, p.stderr()).toBe(130);
    const runPath = onlyRun(join(root, 'stopped'));
    const summary = JSON.parse(readFileSync(join(runPath, 'summary.json'), 'utf8')) as {
      status: string;
      steps: number;
    };
    expect(summary.status).toBe('interrupted');
    expect(summary.steps).toBeLessThan(24);
    expect(p.stderr()).toContain('train --resume');
    const resumed = spawnCli(['train', '--resume', runPath, '--workers', '2', '--quiet']);
    expect(await resumed.done, resumed.stderr()).toBe(0);
    expectBitIdentical(runPath, uninterrupted);
  }, 240_000);

  it('a worker with another config is refused when it joins (CONTRAST_DISTRIBUTED, both exit)', async () => {
    const cluster = (await loopbackCluster(2)).join(',');
    const r0 = spawnCli([
      'train',
      experiment('join'),
      '--cluster',
      cluster,
      '--rank',
      '0',
      '--collective-timeout',
      '10',
    ]);
    const r1 = spawnCli([
      'train',
      experiment('join-other', 'loss: { temperature: 0.2 }\n'),
      '--cluster',
      cluster,
      '--rank',
      '1',
      '--collective-timeout',
      '10',
    ]);
    const [c0, c1] = await Promise.all([r0.done, r1.done]);
    expect(c0, r0.stderr()).toBe(4);
    expect(c1, r1.stderr()).toBe(4);
    expect(r0.stderr()).toContain('CONTRAST_DISTRIBUTED');
    expect(r0.stderr()).toMatch(/config/i);
  }, 120_000);
});

/** The pid of a live `contrast train` worker of `file` whose arguments contain `flag` (0 if none). */
function findWorker(flag: string, file: string): number {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmd.includes(file) && cmd.includes(flag) && cmd.includes('--cluster')) return Number(pid);
    } catch {
      // the process ended while the list was read
    }
  }
  return 0;
}
