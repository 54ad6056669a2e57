import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { readBundle } from '@contrast/core';
import { builtinPlugins, checkRedis, jobId, queuedJob, runStudyOnQueue } from '@contrast/cli';
import { checkpointDir, createCatalog, listCheckpoints } from '@contrast/trainer';
import { freePort, MlflowClient, MlflowServer } from '@contrast/tracking';
import { BIN, cli, spawnCli, waitFor, type CliProcess } from './cli.js';

/**
 * Stop signals on real processes, the way a process manager sends them (to the
 * main process only): train under SIGTERM against a real MLflow server, a study
 * with --parallel children, and a BullMQ worker on a real Redis. Each stops
 * cleanly (checkpoint at the stop step, run marked interrupted, exit 143) and
 * what was stopped resumes and finishes.
 */
const TINY = (name: string, extra = '', epochs = 1) => `name: ${name}
data: { trainSubset: 2048 }
model: { encoder: convnet, width: 1, dim: 32 }
strategy: { name: momentum-queue, queueSize: 512, momentum: 0.99 }
optim: { batchSize: 64, epochs: ${epochs} }
eval: { knn: { every: 1, testSize: 500, bankSize: 1024 }, baselines: false, alignUniform: 200 }
tracking: { logEvery: 1 }
${extra}`;
const STEPS = 32; // steps per epoch: 2048 / 64

const only = (dir: string) => join(dir, readdirSync(dir)[0]!);
const json = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const lossRecords = (run: string) =>
  readFileSync(join(run, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .filter((r) => r.loss !== undefined);
const checkpointSteps = (run: string) =>
  existsSync(checkpointDir(run)) ? listCheckpoints(checkpointDir(run)).map((c) => c.step) : [];
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Every tensor of two final states, compared bit for bit: the number of differing values. */
function differingValues(runA: string, runB: string): number {
  const a = readBundle(join(runA, 'state/final.bin'));
  const b = readBundle(join(runB, 'state/final.bin'));
  expect(Object.keys(b.tensors).sort()).toEqual(Object.keys(a.tensors).sort());
  let differing = 0;
  for (const [name, t] of Object.entries(a.tensors)) {
    const x = t.dataSync();
    const y = b.tensors[name]!.dataSync();
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) differing++;
  }
  tf.dispose([...Object.values(a.tensors), ...Object.values(b.tensors)]);
  return differing;
}

describe('stop signals on real processes', () => {
  let root: string;
  let server: MlflowServer;
  let redis: ChildProcess;
  let queue: string;
  const started: CliProcess[] = [];
  /** A study over queue sizes on the given base experiment; returns the study file. */
  const writeStudy = (name: string, base: string, sizes: number[]) => {
    writeFileSync(join(root, `${name}-base.yaml`), base);
    const file = join(root, `${name}.yaml`);
    writeFileSync(
      file,
      `name: ${name}\nbase: ${name}-base.yaml\naxis: strategy.queueSize\ngrid:\n  strategy.queueSize: [${sizes.join(', ')}]\n`,
    );
    return file;
  };
  const start = (args: string[]) => {
    const p = spawnCli(args);
    started.push(p);
    return p;
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-signals-'));
    const port = await freePort();
    redis = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    queue = `redis://127.0.0.1:${port}`;
    server = await MlflowServer.start({ dir: join(root, 'mlflow') });
    await waitForRedis(queue);
  }, 240_000);

  afterAll(async () => {
    for (const p of started) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    redis?.kill('SIGKILL');
    await server?.stop();
  });

  it('train: SIGTERM before the first epoch end checkpoints that step, marks the run KILLED with an end time; the resumed run equals an uninterrupted one', async () => {
    const base = join(root, 'train.yaml');
    writeFileSync(base, TINY('sig-train'));
    const a = start(['train', base, '--quiet', `--set=tracking.dir=${join(root, 'a')}`]);
    expect(await a.done, a.stderr()).toBe(0);
    const runA = only(join(root, 'a'));

    const bDir = join(root, 'b');
    const b = start([
      'train',
      base,
      `--set=tracking.dir=${bDir}`,
      `--set=tracking.uri=${server.uri}`,
      '--set=tracking.uploadEvery=0.2',
    ]);
    expect(await waitFor(() => / 4\/32 /.test(b.stderr()), 120_000), b.stderr()).toBe(true);
    b.proc.kill('SIGTERM');
    expect(await b.done, b.stderr()).toBe(143);
    const runB = only(bDir);
    // spawned as `node bin.js`, with no contrast on PATH: it prints the command that works here
    expect(b.stderr()).toContain(`resume with:\n  node ${BIN} train --resume ${runB}\n`);
    const summary = json(join(runB, 'summary.json'));
    expect(summary.status).toBe('interrupted');
    const stopped = summary.steps as number;
    expect(stopped).toBeGreaterThanOrEqual(4);
    expect(stopped).toBeLessThan(STEPS); // before the first (and only) epoch end
    expect(checkpointSteps(runB)).toEqual([stopped]); // checkpoint.every is 0: the stop wrote it

    const client = new MlflowClient(server.uri, { auth: {} });
    const runId = json(join(runB, 'mlflow.json')).runId as string;
    const killed = (await client.getRun(runId)).info;
    expect(killed.status).toBe('KILLED');
    expect(killed.end_time).toBeGreaterThanOrEqual(killed.start_time!);

    const resumed = start(['train', '--resume', runB, '--quiet']);
    expect(await resumed.done, resumed.stderr()).toBe(0);
    expect(json(join(runB, 'summary.json')).resumed_from).toMatch(
      new RegExp(`step-0*${stopped}\\.ckpt$`),
    );
    expect(differingValues(runA, runB)).toBe(0);
    const lossB = lossRecords(runB);
    expect(lossB.map((r) => r.step)).toEqual(range(STEPS));
    expect(lossB.map((r) => r.loss)).toEqual(lossRecords(runA).map((r) => r.loss));
    expect((await client.getRun(runId)).info.status).toBe('FINISHED');
    const history = await client.getMetricHistory(runId, 'loss');
    expect(history.map((m) => m.step).sort((x, y) => x - y)).toEqual(range(STEPS));
  });

  it('study --parallel 2: SIGTERM to the parent stops both children cleanly; the same command resumes and finishes them', async () => {
    const file = writeStudy(
      'sig-study',
      TINY('sig-study', 'checkpoint: { every: 2 }', 3),
      [128, 256],
    );
    const out = join(root, 'study');
    const args = ['study', 'run', file, '--parallel', '2', '--out', out];
    const first = start(args);
    const runsDir = join(out, 'runs');
    const bothTraining = () =>
      existsSync(runsDir) &&
      readdirSync(runsDir).length === 2 &&
      readdirSync(runsDir).every((d) => checkpointSteps(join(runsDir, d)).length > 0);
    expect(await waitFor(bothTraining, 180_000), first.stderr()).toBe(true);
    first.proc.kill('SIGTERM');
    expect(await first.done, first.stderr()).toBe(143);
    expect(first.stderr()).toContain(`Continue with:\n  node ${BIN} ${args.join(' ')}\n`);
    const stoppedAt: Record<string, number> = {};
    for (const d of readdirSync(runsDir)) {
      const summary = json(join(runsDir, d, 'summary.json'));
      expect(summary.status, d).toBe('interrupted');
      expect(summary.steps, d).toBeLessThan(3 * STEPS);
      expect(checkpointSteps(join(runsDir, d))[0], d).toBe(summary.steps); // newest = the stop step
      stoppedAt[d] = summary.steps;
    }
    expect(existsSync(join(out, 'results.jsonl'))).toBe(false);

    const again = start(args);
    expect(await again.done, again.stderr()).toBe(0);
    expect(readFileSync(join(out, 'results.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
    for (const d of readdirSync(runsDir)) {
      const summary = json(join(runsDir, d, 'summary.json'));
      expect(summary.status, d).toBe('finished');
      expect(summary.resumed_from, d).toMatch(new RegExp(`step-0*${stoppedAt[d]}\\.ckpt$`));
      expect(lossRecords(join(runsDir, d)).map((r) => r.step)).toEqual(range(3 * STEPS));
    }
  });

  it('worker: SIGTERM mid-job checkpoints, gives the job back (not a failed attempt); a second worker resumes it', async () => {
    const file = writeStudy('sig-worker', TINY('sig-worker', 'checkpoint: { every: 4 }', 2), [512]);
    const out = join(root, 'w-out');
    const a = start(['worker', '--queue', queue, '--lock-seconds', '3']);
    const submitted = runStudyOnQueue(file, createCatalog(builtinPlugins()), {
      queue,
      out,
      log: () => {},
    });
    const runsDir = join(out, 'runs');
    const midRun = () =>
      existsSync(runsDir) &&
      readdirSync(runsDir).length === 1 &&
      checkpointSteps(only(runsDir)).some((s) => s >= 4 && s < 2 * STEPS);
    expect(await waitFor(midRun, 180_000), a.stderr()).toBe(true);
    a.proc.kill('SIGTERM');
    expect(await a.done, a.stderr()).toBe(143);
    expect(a.stderr()).toMatch(
      /stopped \(SIGTERM\) after step \d+, checkpointed; back to the queue/,
    );
    const run = only(runsDir);
    const summary = json(join(run, 'summary.json'));
    expect(summary.status).toBe('interrupted');
    expect(checkpointSteps(run)[0]).toBe(summary.steps);

    const id = run.split('-').pop()!;
    expect(await queuedJob(queue, id)).toEqual({ state: 'waiting', attemptsMade: 0 });

    const b = start(['worker', '--queue', queue, '--lock-seconds', '3']);
    const result = await submitted;
    expect(result.failed).toEqual([]);
    expect(result.results).toHaveLength(1);
    expect(b.stderr()).toContain(`active ${jobId(id)}`);
    const finished = json(join(run, 'summary.json'));
    expect(finished.status).toBe('finished');
    expect(finished.resumed_from).toMatch(new RegExp(`step-0*${summary.steps}\\.ckpt$`));
    expect(lossRecords(run).map((r) => r.step)).toEqual(range(2 * STEPS));

    b.proc.kill('SIGTERM'); // idle: stops at once
    expect(await b.done, b.stderr()).toBe(143);
  });

  it('doctor reaches the MLflow server and Redis these tests started', async () => {
    const exp = join(root, 'train.yaml');
    const { code, stdout } = await cli([
      'doctor',
      exp,
      `--set=tracking.uri=${server.uri}`,
      `--set=tracking.dir=${join(root, 'doctor-runs')}`,
      '--queue',
      queue,
      '--json',
    ]);
    const report = JSON.parse(stdout) as {
      checks: { name: string; ok: boolean; detail: string }[];
    };
    const by = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    expect(by.mlflow).toMatchObject({ ok: true, detail: `${server.uri} answers` });
    expect(by.redis).toMatchObject({ ok: true, detail: `${queue} answers` });
    expect(by['dataset fashion-mnist']!.ok).toBe(true);
    expect(code).toBe(0);
  });
});

async function waitForRedis(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      await checkRedis(url);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await checkRedis(url);
}
