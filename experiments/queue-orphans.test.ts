import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinPlugins, checkRedis, runStudyOnQueue } from '@contrast/cli';
import { RunLockedError } from '@contrast/core';
import type { StudyResult } from '@contrast/study';
import { createCatalog } from '@contrast/trainer';
import { freePort, lockRun, runLockHolder } from '@contrast/tracking';
import { cli } from './cli.js';

/**
 * A worker SIGKILLed (the OOM killer, a machine going away) takes its job's
 * process with it, and at-least-once delivery never trains a run twice: real
 * redis-server, CLI workers killed by pid alone (their children are not
 * signalled: they must notice by themselves), tiny runs of 32 steps (~0.1 s each).
 */
const repo = join(import.meta.dirname, '..');
const bin = join(repo, 'packages/cli/dist/bin.js');
const BASE = `name: o
data: { trainSubset: 4096 }
model: { encoder: convnet, width: 1, dim: 32 }
strategy: { name: momentum-queue, queueSize: 64 }
optim: { batchSize: 128, epochs: 1 }
eval: { knn: { every: 0, testSize: 500, bankSize: 2048 }, baselines: false, alignUniform: 200 }
checkpoint: { every: 4 }
`;

interface CliWorker {
  proc: ChildProcess;
  log: () => string;
}

function startWorker(queue: string): CliWorker {
  const proc = spawn(process.execPath, [bin, 'worker', '--queue', queue, '--lock-seconds', '3'], {
    cwd: repo,
    detached: true, // its own process group, for the clean-up only
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MLFLOW_TRACKING_URI: '' },
  });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  return { proc, log: () => log };
}

/** Whether a pid is a live process (a zombie waiting to be reaped counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return false;
  }
}

/** The parent pid of a process. */
function ppid(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

async function until<T>(what: string, f: () => T | undefined, ms = 120_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Seconds until `pid` is gone (throws after `ms`). */
async function goneWithin(pid: number, ms: number): Promise<number> {
  const t0 = performance.now();
  await until(`process ${pid} to end`, () => !alive(pid), ms);
  return (performance.now() - t0) / 1000;
}

const summaryOf = (run: string) => readFileSync(join(run, 'summary.json'), 'utf8');

describe('a killed worker on BullMQ (real Redis): its job process ends with it, no run is trained twice', () => {
  let root: string;
  let redis: ChildProcess;
  let queue: string;
  const workers: ChildProcess[] = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-orphans-'));
    const port = await freePort();
    redis = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    queue = `redis://127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      if (
        await checkRedis(queue).then(
          () => true,
          () => false,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    writeFileSync(join(root, 'base.yaml'), BASE);
    writeFileSync(
      join(root, 'study.yaml'),
      'name: o2\nbase: base.yaml\naxis: strategy.queueSize\ngrid:\n  strategy.queueSize: [64, 128]\n',
    );
  }, 60_000);

  /** Ends every worker started so far, with its job process (their process groups). */
  const killWorkers = () => {
    for (const w of workers.splice(0)) {
      try {
        process.kill(-w.pid!, 'SIGCONT');
        process.kill(-w.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };

  afterAll(() => {
    killWorkers();
    redis?.kill('SIGKILL');
  });

  it('SIGKILL mid-job and after the run finished: no orphan, a second writer refused, the finished run not retrained', async () => {
    const out = join(root, 'out');
    const runsDir = join(out, 'runs');
    const runs = () =>
      existsSync(runsDir) ? readdirSync(runsDir).map((d) => join(runsDir, d)) : [];
    /** The run folder a live child of `worker` holds the lock of, with that child's pid. */
    const heldBy = (worker: ChildProcess) => {
      for (const run of runs()) {
        const pid = runLockHolder(run)?.pid;
        if (pid && alive(pid) && ppid(pid) === worker.pid) return { run, pid };
      }
      return undefined;
    };
    const a = startWorker(queue);
    workers.push(a.proc);
    const submitted = runStudyOnQueue(join(root, 'study.yaml'), createCatalog(builtinPlugins()), {
      queue,
      out,
      log: () => {},
    });

    // 1. worker a dies early in its job (a checkpoint at step 4 or 8 of 32): its child follows
    // at once, long before it could have finished the run on its own
    const midRun = (run: string) => {
      const ckpts = existsSync(join(run, 'checkpoints'))
        ? readdirSync(join(run, 'checkpoints'))
        : [];
      return ckpts.length > 0 && ckpts.every((f) => /step-0000000[48]\.ckpt/.test(f));
    };
    const first = await until('worker a mid-job', () => {
      const h = heldBy(a.proc);
      return h && midRun(h.run) ? h : undefined;
    });
    process.kill(a.proc.pid!, 'SIGKILL');
    const aGone = await goneWithin(first.pid, 5000);
    expect(JSON.parse(summaryOf(first.run)).status).not.toBe('finished');
    expect(runLockHolder(first.run)).toBeUndefined(); // it released the run folder on its way out

    // 2. worker b is stopped (SIGSTOP) while its child trains: the child finishes the run alone,
    // its job never completes; then b is SIGKILLed
    const b = startWorker(queue);
    workers.push(b.proc);
    const second = await until('worker b training', () => heldBy(b.proc));
    process.kill(b.proc.pid!, 'SIGSTOP');
    // meanwhile a second writer on that run folder is refused, naming the live one
    const refused = (() => {
      try {
        lockRun(second.run).release();
      } catch (e) {
        return e as RunLockedError;
      }
    })();
    expect(refused).toBeInstanceOf(RunLockedError);
    expect(refused?.code).toBe('CONTRAST_RUN_LOCKED');
    expect(refused?.holder.pid).toBe(second.pid);
    const finished = await until('the run to finish', () =>
      existsSync(join(second.run, 'summary.json')) &&
      JSON.parse(summaryOf(second.run)).status === 'finished' &&
      !runLockHolder(second.run)
        ? summaryOf(second.run)
        : undefined,
    );
    process.kill(b.proc.pid!, 'SIGKILL');
    const bGone = await goneWithin(second.pid, 5000);

    // 3. worker c takes both jobs back: resumes a's run, returns b's finished run as it is
    const c = startWorker(queue);
    workers.push(c.proc);
    const result = await submitted;
    expect(result.failed).toEqual([]);
    expect(result.results).toHaveLength(2);
    const table = readFileSync(join(out, 'table.md'), 'utf8');
    for (const r of result.results) expect(table).toContain((100 * r.knn).toFixed(2));
    expect(summaryOf(second.run)).toBe(finished); // not trained again, not even touched
    expect(c.log()).toContain('already finished its 32 steps: its result stands');
    const summary = JSON.parse(finished);
    const byRun = Object.fromEntries(result.results.map((r: StudyResult) => [r.runPath, r]));
    expect(byRun[second.run]).toMatchObject({
      knn: summary.knn.trained,
      finalLoss: summary.final_loss,
      steps: 32,
    });
    // a's run was resumed from its checkpoint (by b or c), not finished by an orphan
    expect(JSON.parse(summaryOf(first.run)).resumed_from).toMatch(/step-\d+\.ckpt$/);
    console.log(
      `[orphans test] job processes ended ${aGone.toFixed(1)} s / ${bGone.toFixed(1)} s after their worker's SIGKILL`,
    );
  });

  it('a worker that loses the job lock stops its job process; the job resumes from the checkpoint', async () => {
    writeFileSync(
      join(root, 'lost.yaml'),
      'name: lost\nbase: base.yaml\naxis: strategy.queueSize\ngrid:\n  strategy.queueSize: [256]\n',
    );
    const out = join(root, 'lost-out');
    killWorkers(); // this worker alone takes the job
    const w = startWorker(queue);
    workers.push(w.proc);
    const submitted = runStudyOnQueue(join(root, 'lost.yaml'), createCatalog(builtinPlugins()), {
      queue,
      out,
      log: () => {},
    });
    const run = await until('the job mid-run', () => {
      const dir = join(out, 'runs');
      const name = existsSync(dir) ? readdirSync(dir)[0] : undefined;
      const ckpts = name ? join(dir, name, 'checkpoints') : '';
      return name && existsSync(ckpts) && readdirSync(ckpts).some((f) => /0000000[48]\./.test(f))
        ? join(dir, name)
        : undefined;
    });
    const id = [...w.log().matchAll(/active (cfg-\w+)/g)].pop()![1]!;
    // the lock expires or another worker takes it over: here, the key is deleted
    const del = spawnSync('redis-cli', ['-u', queue, 'DEL', `bull:contrast-studies:${id}:lock`]);
    expect(String(del.stdout).trim()).toBe('1');
    const result = await submitted;
    expect(result.failed).toEqual([]);
    expect(result.results).toHaveLength(1);
    expect(w.log()).toContain(`Redis refused to renew the job lock: stopping ${id}`);
    expect(w.log()).toContain("this worker lost the job's lock");
    // stopped (checkpointed, interrupted), then taken again from the queue and resumed
    expect(JSON.parse(summaryOf(run)).resumed_from).toMatch(/step-\d+\.ckpt$/);
  });

  it('`train --resume` on a run folder another process writes is refused (CONTRAST_RUN_LOCKED, exit 2)', async () => {
    const run = runs0(root);
    // a live holder: another process that took the folder's lock
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import 'reflect-metadata'; import { lockRun } from ${JSON.stringify(join(repo, 'packages/tracking/dist/index.js'))};
lockRun(${JSON.stringify(run)}); process.stdout.write('locked\\n'); setInterval(() => {}, 1000);`,
      ],
      { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise((res) => holder.stdout!.once('data', res));
      const before = summaryOf(run);
      const r = await cli(['train', '--resume', run]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('CONTRAST_RUN_LOCKED');
      expect(r.stderr).toContain(`process ${holder.pid}`);
      expect(r.stderr).toContain(`kill ${holder.pid}`);
      expect(summaryOf(run)).toBe(before);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

/** A run folder the first test left. */
function runs0(root: string): string {
  const dir = join(root, 'out', 'runs');
  return join(dir, readdirSync(dir)[0]!);
}
