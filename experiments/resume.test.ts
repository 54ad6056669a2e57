import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadExperiment, readBundle } from '@contrast/core';
import { builtinPlugins } from '@contrast/cli';
import { writeSyntheticFolder } from '@contrast/data';
import { checkpointDir, createCatalog, listCheckpoints, runExperiment } from '@contrast/trainer';
import { MlflowClient, MlflowServer } from '@contrast/tracking';
import * as tf from '@tensorflow/tfjs';

/**
 * Exact resume: a run killed with SIGKILL mid-epoch and resumed from its last
 * checkpoint ends with the same weights, BN statistics, key encoder, queue and
 * optimizer slots (bit for bit) and the same metrics as the run left alone.
 * Both runs are CLI processes, as a user would run them.
 */
const repo = join(import.meta.dirname, '..');
const bin = join(repo, 'packages/cli/dist/bin.js');
const STEPS = 32; // 2 epochs of 16 steps
const BASE = `name: resume-tiny
data: { trainSubset: 2048 }
model: { encoder: convnet, width: 1, dim: 32 }
strategy: { name: momentum-queue, queueSize: 512, momentum: 0.99 }
optim: { batchSize: 128, epochs: 2 }
eval: { knn: { every: 1, testSize: 500, bankSize: 2048 }, baselines: false }
checkpoint: { every: 5, keep: 3 }
`;

function train(args: string[]): { done: Promise<number>; kill: () => void; stderr: () => string } {
  const child = spawn(process.execPath, [bin, 'train', ...args], {
    cwd: repo,
    env: { ...process.env, MLFLOW_TRACKING_URI: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return {
    done: new Promise((r) => child.on('exit', (code, signal) => r(code ?? (signal ? -9 : -1)))),
    kill: () => child.kill('SIGKILL'),
    stderr: () => err,
  };
}

const only = (dir: string) => join(dir, readdirSync(dir)[0]!);
const records = (run: string) =>
  readFileSync(join(run, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);
/** Everything but wall-clock fields and the machine's system metrics, in file order. */
const numbers = (run: string) =>
  records(run)
    .filter((r) => !Object.keys(r).some((k) => k.startsWith('system/')))
    .map(({ time: _t, img_per_sec: _i, ...rest }) => rest);

/**
 * Compares the final states of two runs: the same tensors (encoder, key encoder,
 * strategy, optimizer) and queue pointer; returns how many values differ.
 */
function compareFinalStates(runA: string, runB: string): { differing: number; names: string[] } {
  const fa = readBundle(join(runA, 'state/final.bin'));
  const fb = readBundle(join(runB, 'state/final.bin'));
  const names = Object.keys(fa.tensors).sort();
  expect(Object.keys(fb.tensors).sort()).toEqual(names);
  for (const prefix of ['encoder/', 'key_encoder/', 'strategy/', 'optimizer/']) {
    expect(
      names.some((n) => n.startsWith(prefix)),
      prefix,
    ).toBe(true);
  }
  let differing = 0;
  for (const n of names) {
    const x = fa.tensors[n]!.dataSync();
    const y = fb.tensors[n]!.dataSync();
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) differing++;
  }
  expect(fb.values.strategy).toEqual(fa.values.strategy); // queue pointer
  tf.dispose([...Object.values(fa.tensors), ...Object.values(fb.tensors)]);
  return { differing, names };
}

/**
 * Starts a run (its folder the only one in `dir`) and SIGKILLs it once its
 * newest checkpoint is one `ready` accepts; returns that checkpoint's step.
 */
async function killAfterCheckpoint(
  args: string[],
  dir: string,
  ready: (step: number, run: string) => boolean,
): Promise<number> {
  const b = train(args);
  let killed = -1;
  let exited = false;
  void b.done.then(() => (exited = true));
  const deadline = Date.now() + 240_000; // however slow the machine, until the run ends
  while (!exited && killed < 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
    if (!existsSync(dir) || readdirSync(dir).length === 0) continue;
    const run = only(dir);
    const latest = listCheckpoints(checkpointDir(run))[0]?.step ?? 0;
    if (latest > 0 && ready(latest, run)) {
      b.kill();
      killed = latest;
    }
  }
  expect(await b.done, b.stderr()).toBe(-9); // it really was killed, not finished
  return killed;
}

describe('exact resume after SIGKILL', () => {
  let root: string;
  let base: string;
  let server: MlflowServer;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-resume-'));
    base = join(root, 'base.yaml');
    writeFileSync(base, BASE);
    server = await MlflowServer.start({ dir: join(root, 'server') });
  }, 180_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('killed mid-epoch and resumed == left alone: weights, queue, optimizer, metrics; one MLflow run', async () => {
    // A: left alone
    const a = train([base, `--set=tracking.dir=${join(root, 'a')}`]);
    expect(await a.done, a.stderr()).toBe(0);
    const runA = only(join(root, 'a'));

    // B: tracked in MLflow (uploads every 0.2 s, so metrics past the checkpoint reach the
    // server before the kill), killed with SIGKILL mid-epoch once that has happened
    const bDir = join(root, 'b');
    const tracked = [`--set=tracking.uri=${server.uri}`, '--set=tracking.uploadEvery=0.2'];
    let sentPastCheckpoint = 0;
    const killedAfter = await killAfterCheckpoint(
      [base, `--set=tracking.dir=${bDir}`, ...tracked],
      bDir,
      (latest, run) => {
        const state = join(run, 'mlflow.json');
        if (latest % 16 === 0 || !existsSync(state)) return false;
        const sent = JSON.parse(readFileSync(state, 'utf8')).metricRecordsSent as number;
        sentPastCheckpoint = Math.max(0, sent - latest);
        // wanted: records past the checkpoint already uploaded; on a loaded machine the server may
        // lag behind, so by the last mid-epoch checkpoint (30) the run is killed anyway
        return sent > latest || latest >= 30;
      },
    );
    expect(killedAfter).toBeGreaterThan(0);
    const runB = only(bDir);
    const left = listCheckpoints(checkpointDir(runB))[0]!.step;
    expect(left).toBeLessThan(STEPS);
    expect(left % 16).not.toBe(0); // the checkpoint it resumes from is mid-epoch

    const resumed = train(['--resume', runB, ...tracked]);
    expect(await resumed.done, resumed.stderr()).toBe(0);
    expect(resumed.stderr()).toContain(`resuming after step ${left}`);

    // every tensor of the final state, bit for bit
    const { differing, names } = compareFinalStates(runA, runB);
    expect(differing).toBe(0);

    // the same metrics, each step once (the killed run's tail was cut back and rewritten)
    expect(numbers(runB)).toEqual(numbers(runA));
    const steps = records(runB)
      .filter((r) => r.loss !== undefined)
      .map((r) => r.step);
    expect(steps).toEqual(Array.from({ length: STEPS }, (_, i) => i));

    // one MLflow run, continued; nothing on the server twice
    const state = JSON.parse(readFileSync(join(runB, 'mlflow.json'), 'utf8'));
    const client = new MlflowClient(server.uri, { auth: {} });
    const exp = await client.getExperimentByName('resume-tiny');
    const runs = await client.searchRuns([exp!.experiment_id]);
    expect(runs.map((r) => r.info.run_id)).toEqual([state.runId]);
    expect(runs[0]!.info.status).toBe('FINISHED');
    const loss = await client.getMetricHistory(state.runId, 'loss');
    expect(loss.map((m) => m.step).sort((p, q) => p - q)).toEqual(steps);
    console.log(
      `[resume test] killed after checkpoint ${left} of ${STEPS} steps with ${sentPastCheckpoint} records past it ` +
        `already on the server; resumed: ${differing} differing values in ${names.length} tensors; ` +
        `${loss.length} loss points on the server`,
    );
  });

  it('refuses to resume with a changed recipe, naming the fields', async () => {
    const runA = only(join(root, 'a'));
    const changed = loadExperiment(join(runA, 'config.yaml'), [
      'optim.lr=0.5',
      'strategy.queueSize=1024',
      'tracking.uploadWait=1', // where and how a run is tracked may change
    ]);
    const e = await runExperiment(changed, createCatalog(builtinPlugins()), {
      progress: false,
      log: () => {},
      resumeFrom: { runPath: runA },
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).message).toContain('optim.lr (run: 0.03, now: 0.5)');
    expect((e as ConfigError).message).toContain('strategy.queueSize (run: 512, now: 1024)');
    expect((e as ConfigError).message).not.toContain('uploadWait');
  });

  it('refuses to resume a run that already finished, and leaves it as it was', async () => {
    const runA = only(join(root, 'a'));
    const summary = readFileSync(join(runA, 'summary.json'), 'utf8');
    const metrics = readFileSync(join(runA, 'metrics.jsonl'), 'utf8');
    const r = train(['--resume', runA]);
    expect(await r.done).toBe(2);
    expect(r.stderr()).toContain('already finished its 32 steps');
    expect(readFileSync(join(runA, 'summary.json'), 'utf8')).toBe(summary);
    expect(readFileSync(join(runA, 'metrics.jsonl'), 'utf8')).toBe(metrics);
  });

  it('an interrupt (Ctrl-C) checkpoints the step it stopped after; resuming finishes the run', async () => {
    const config = loadExperiment(base, [`tracking.dir=${join(root, 'c')}`, 'checkpoint.every=0']);
    const catalog = createCatalog(builtinPlugins());
    let polls = 0;
    const first = await runExperiment(config, catalog, {
      progress: false,
      log: () => {},
      shouldStop: () => ++polls > 7, // stop after 7 steps, as SIGINT does
    });
    expect(first.result.status).toBe('interrupted');
    expect(first.result.steps).toBe(7);
    expect(listCheckpoints(checkpointDir(first.runPath)).map((c) => c.step)).toEqual([7]);
    expect(JSON.parse(readFileSync(join(first.runPath, 'summary.json'), 'utf8')).status).toBe(
      'interrupted',
    );
    const second = await runExperiment(config, catalog, {
      progress: false,
      log: () => {},
      resumeFrom: { runPath: first.runPath },
    });
    expect(second.runPath).toBe(first.runPath);
    expect(second.result).toMatchObject({ status: 'finished', steps: STEPS, epochs: 2 });
    const a = records(only(join(root, 'a'))).filter((r) => r.loss !== undefined);
    const c = records(first.runPath).filter((r) => r.loss !== undefined);
    expect(c.map((r) => [r.step, r.loss])).toEqual(a.map((r) => [r.step, r.loss]));
  });
});

/**
 * The same standard for a streamed image folder: the data order, the
 * augmentation stream and the decode queue (rebuilt from the index position)
 * continue exactly, so the killed and resumed run ends bit for bit where the
 * run left alone does.
 */
describe('exact resume of a streamed image folder after SIGKILL', () => {
  let root: string;
  let base: string;
  const STREAM_STEPS = 20; // 2 epochs of 10 steps

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-resume-stream-'));
    await writeSyntheticFolder(join(root, 'pics'), { count: 680, size: 36, perFolder: 200 });
    base = join(root, 'base.yaml');
    writeFileSync(
      base,
      `name: resume-stream
data: { dataset: image-folder, root: ${join(root, 'pics')}, imageSize: 32, holdout: 40 }
model: { encoder: convnet, width: 1, dim: 32 }
strategy: { name: momentum-queue, queueSize: 256, momentum: 0.99 }
optim: { batchSize: 64, epochs: 2 }
eval: { alignUniform: 40 }
checkpoint: { every: 3, keep: 3 }
`,
    );
  }, 120_000);

  it('killed mid-epoch and resumed == left alone: weights, queue, optimizer, metrics', async () => {
    const a = train([base, `--set=tracking.dir=${join(root, 'a')}`]);
    expect(await a.done, a.stderr()).toBe(0);
    const runA = only(join(root, 'a'));
    expect(a.stderr()).toContain('kNN (and its baselines) skipped');

    const bDir = join(root, 'b');
    const killed = await killAfterCheckpoint(
      [base, `--set=tracking.dir=${bDir}`],
      bDir,
      (s) => s % 10 !== 0,
    );
    const runB = only(bDir);
    const left = listCheckpoints(checkpointDir(runB))[0]!.step; // one may land before the kill
    expect(left).toBeGreaterThanOrEqual(killed);
    expect(left).toBeLessThan(STREAM_STEPS);
    const resumed = train(['--resume', runB]);
    expect(await resumed.done, resumed.stderr()).toBe(0);
    expect(resumed.stderr()).toContain(`resuming after step ${left}`);
    const { differing, names } = compareFinalStates(runA, runB);
    expect(differing).toBe(0);
    expect(numbers(runB)).toEqual(numbers(runA));
    console.log(
      `[resume test, streamed folder] killed after checkpoint ${left} of ${STREAM_STEPS} steps; resumed: ${differing} differing values in ${names.length} tensors`,
    );
  });
});
