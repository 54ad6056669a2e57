import { spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinPlugins, queuedJob, runStudyOnQueue } from '@contrast/cli';
import { FASHION_MNIST_FILES, fashionMnistDir } from '@contrast/data';
import { runStudy, type StudyResult } from '@contrast/study';
import { createCatalog } from '@contrast/trainer';
import { freePort, MlflowClient, MlflowServer } from '@contrast/tracking';
import { cli } from './cli.js';

/**
 * A study on BullMQ with a real redis-server and a real MLflow server: two CLI
 * workers, one killed with SIGKILL (with its sandboxed child) while it trains;
 * the job is retried by the other worker and resumes from the run's checkpoint,
 * continuing the same MLflow run.
 */
const repo = join(import.meta.dirname, '..');
const bin = join(repo, 'packages/cli/dist/bin.js');
const BASE = `name: q
data: { trainSubset: 2048 }
model: { encoder: convnet, width: 1, dim: 32 }
strategy: { name: momentum-queue, queueSize: 64 }
optim: { batchSize: 128, epochs: 1 }
eval: { knn: { every: 0, testSize: 500, bankSize: 2048 }, baselines: false, alignUniform: 200 }
checkpoint: { every: 4 }
`;

function startWorker(queue: string): { proc: ChildProcess; log: () => string } {
  const proc = spawn(process.execPath, [bin, 'worker', '--queue', queue, '--lock-seconds', '3'], {
    cwd: repo,
    detached: true, // its own process group: killing it takes the sandboxed child too
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MLFLOW_TRACKING_URI: '' },
  });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  return { proc, log: () => log };
}

const killGroup = (p: ChildProcess, signal: NodeJS.Signals) => {
  try {
    process.kill(-p.pid!, signal);
  } catch {
    /* already gone */
  }
};

describe('studies across workers on BullMQ (real Redis)', () => {
  let root: string;
  let redis: ChildProcess;
  let queue: string;
  let mlflow: MlflowServer;
  const workers: ChildProcess[] = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-queue-'));
    const port = await freePort();
    redis = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      {
        stdio: 'ignore',
      },
    );
    queue = `redis://127.0.0.1:${port}`;
    const { checkRedis } = await import('@contrast/cli');
    for (let i = 0; i < 100; i++) {
      try {
        await checkRedis(queue);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    mlflow = await MlflowServer.start({ dir: join(root, 'mlflow') });
    writeFileSync(join(root, 'base.yaml'), BASE);
    writeFileSync(
      join(root, 'study.yaml'),
      'name: q4\nbase: base.yaml\naxis: strategy.queueSize\ngrid:\n  strategy.queueSize: [64, 128, 256, 512]\n',
    );
    // the same study, tracked in MLflow (where a run is tracked does not change its config hash)
    writeFileSync(
      join(root, 'study-mlflow.yaml'),
      `${readFileSync(join(root, 'study.yaml'), 'utf8')}set: { tracking.uri: '${mlflow.uri}' }\n`,
    );
  }, 240_000);

  afterAll(() => {
    for (const w of workers) killGroup(w, 'SIGKILL');
    redis?.kill('SIGKILL');
    void mlflow?.stop();
  });

  it('4 configurations, two workers, one killed mid-run: each completes once, as a local run would', async () => {
    const catalog = () => createCatalog(builtinPlugins());
    const local = await runStudy(join(root, 'study.yaml'), catalog(), {
      out: join(root, 'local'),
      progress: false,
      log: () => {},
    });

    const a = startWorker(queue);
    const b = startWorker(queue);
    workers.push(a.proc, b.proc);
    const out = join(root, 'distributed');
    const submitted = runStudyOnQueue(join(root, 'study-mlflow.yaml'), catalog(), {
      queue,
      out,
      log: () => {},
    });
    // kill worker a once the job it holds has a finished checkpoint before its last step (16)
    let killedJob = '';
    const midRun = (dir: string) =>
      existsSync(dir) &&
      readdirSync(dir).some((f) => /^step-\d+\.ckpt$/.test(f) && Number(f.slice(5, -5)) < 16) &&
      !readdirSync(dir).includes('step-00000016.ckpt');
    const deadline = Date.now() + 240_000;
    while (!killedJob && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      const active = [...a.log().matchAll(/active (cfg-(\w+))/g)].pop();
      if (!active) continue;
      const runs = existsSync(join(out, 'runs')) ? readdirSync(join(out, 'runs')) : [];
      const dir = runs.find((d) => d.endsWith(active[2]!));
      if (dir && midRun(join(out, 'runs', dir, 'checkpoints'))) {
        killGroup(a.proc, 'SIGKILL');
        killedJob = active[1]!;
      }
    }
    expect(
      killedJob,
      `worker a:\n${a.log().slice(-3000)}\nruns: ${existsSync(join(out, 'runs')) ? readdirSync(join(out, 'runs')).join(',') : '-'}`,
    ).not.toBe('');
    const result = await submitted;
    expect(result.failed).toEqual([]);

    // every configuration exactly once, one run folder each
    const byId = (rs: StudyResult[]) => Object.fromEntries(rs.map((r) => [r.id, r]));
    const lines = readFileSync(join(out, 'results.jsonl'), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(new Set(result.results.map((r) => r.id)).size).toBe(4);
    expect(readdirSync(join(out, 'runs'))).toHaveLength(4);
    // the same numbers as the local run of the same study
    const l = byId(local.results);
    for (const r of result.results) {
      expect(r.knn, r.id).toBe(l[r.id]!.knn);
      expect(r.finalLoss, r.id).toBe(l[r.id]!.finalLoss);
      expect(r.alignment, r.id).toBe(l[r.id]!.alignment);
    }
    // the killed job was picked up by the other worker and resumed from its checkpoint
    expect(b.log()).toContain(`active ${killedJob}`);
    const killedRun = readdirSync(join(out, 'runs')).find((d) =>
      killedJob.endsWith(d.split('-').pop()!),
    )!;
    const summary = JSON.parse(readFileSync(join(out, 'runs', killedRun, 'summary.json'), 'utf8'));
    expect(summary.resumed_from).toMatch(/step-\d+\.ckpt$/);
    expect(readFileSync(join(out, 'table.md'), 'utf8')).toContain('| q4 |');

    // MLflow: one parent run and one child per configuration, no duplicate; the killed
    // configuration's run continued after the resume, with every step logged once
    const client = new MlflowClient(mlflow.uri, { auth: {} });
    const exp = await client.getExperimentByName('q4');
    const tracked = await client.searchRuns([exp!.experiment_id]);
    const tag = (r: (typeof tracked)[number], k: string) =>
      r.data.tags?.find((t) => t.key === k)?.value;
    const parents = tracked.filter((r) => !tag(r, 'mlflow.parentRunId'));
    expect(parents).toHaveLength(1);
    const children = tracked.filter(
      (r) => tag(r, 'mlflow.parentRunId') === parents[0]!.info.run_id,
    );
    expect(tracked).toHaveLength(5);
    expect(new Set(children.map((c) => tag(c, 'contrast.run_dir'))).size).toBe(4);
    for (const r of tracked) expect(r.info.status).toBe('FINISHED');
    const killedMlflow = children.find((c) => tag(c, 'contrast.run_dir')!.endsWith(killedRun))!;
    const losses = await client.getMetricHistory(killedMlflow.info.run_id, 'loss');
    expect(losses.map((m) => m.step).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 16 }, (_, i) => i),
    );

    // status, and a re-submission that finds everything done
    const { studyStatus } = await import('@contrast/cli');
    const status = await studyStatus(join(root, 'study-mlflow.yaml'), catalog(), { queue, out });
    expect(status.completed).toHaveLength(4);
    const again = await runStudyOnQueue(join(root, 'study-mlflow.yaml'), catalog(), {
      queue,
      out,
      log: () => {},
    });
    expect(again.results).toHaveLength(4);
    expect(readFileSync(join(out, 'results.jsonl'), 'utf8').trim().split('\n')).toHaveLength(4);
    expect(await client.searchRuns([exp!.experiment_id])).toHaveLength(5);
    console.log(
      `[queue test] killed ${killedJob} after its checkpoint; resumed from ${summary.resumed_from.split('/').pop()}; ` +
        `kNN ${result.results.map((r) => (100 * r.knn).toFixed(2)).join(' / ')} (same as the local run)`,
    );
  });

  it('a job that fails every time is marked failed after its retries; the rest finish and are reported', async () => {
    writeFileSync(
      join(root, 'bad.yaml'),
      'name: bad\nbase: base.yaml\naxis: data.root\nzip:\n  data.root: [/usr/share/datasets/fashion-mnist, /nonexistent/fmnist]\n',
    );
    const r = await runStudyOnQueue(join(root, 'bad.yaml'), createCatalog(builtinPlugins()), {
      queue,
      out: join(root, 'bad-out'),
      attempts: 2,
      log: () => {},
    });
    expect(r.results).toHaveLength(1);
    expect(r.failed).toHaveLength(1);
    expect(r.failed[0]!.reason).toContain('Fashion-MNIST not found');
    expect(readFileSync(join(root, 'bad-out', 'table.md'), 'utf8')).toContain(
      'Failed after their retries (1)',
    );
  });

  it('a failed configuration runs again when the study is re-run after the fix; done ones are not re-queued', async () => {
    const dataRoot = join(root, 'fmnist-later'); // does not exist yet
    writeFileSync(
      join(root, 'later.yaml'),
      `name: later\nbase: base.yaml\naxis: strategy.queueSize\ngrid:\n  strategy.queueSize: [64]\nset: { data.root: '${dataRoot}' }\n`,
    );
    const args = [
      'study',
      'run',
      join(root, 'later.yaml'),
      '--queue',
      queue,
      '--out',
      join(root, 'later-out'),
      '--json',
    ];
    const first = await cli(args);
    expect(first.code, first.stderr).toBe(1);
    const failed = JSON.parse(first.stdout) as { failed: { id: string; reason: string }[] };
    expect(failed.failed).toHaveLength(1);
    expect(failed.failed[0]!.reason).toContain('Fashion-MNIST not found');
    const id = failed.failed[0]!.id;
    expect(await queuedJob(queue, id)).toMatchObject({ state: 'failed', attemptsMade: 3 });

    mkdirSync(dataRoot); // the fix: the folder the study names, with the dataset in it
    for (const f of Object.values(FASHION_MNIST_FILES)) {
      symlinkSync(join(fashionMnistDir(), f), join(dataRoot, f));
    }
    const second = await cli(args);
    expect(second.code, second.stderr).toBe(0);
    const done = JSON.parse(second.stdout) as { results: { id: string }[]; failed: unknown[] };
    expect(done.failed).toEqual([]);
    expect(done.results.map((r) => r.id)).toEqual([id]);
    expect(second.stderr).toContain('0 configurations queued on');
    expect(second.stderr).toContain('1 failed ones queued again');
    expect(await queuedJob(queue, id)).toMatchObject({ state: 'completed' });

    // a third run finds it done: nothing queued, the result not doubled
    const third = await cli(args);
    expect(third.code).toBe(0);
    expect(third.stderr).toContain('0 configurations queued on');
    expect(third.stderr).toContain('(1 already done)');
    expect(
      readFileSync(join(root, 'later-out', 'results.jsonl'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(1);
  });

  it('a study that asks for the linear probe later: its completed jobs run again for the probe only', async () => {
    const w = startWorker(queue);
    workers.push(w.proc);
    const study = (evaluate: string) => {
      writeFileSync(
        join(root, 'probe.yaml'),
        `name: probe\nbase: base.yaml\naxis: strategy.queueSize\ngrid:\n  strategy.queueSize: [64]\n${evaluate}`,
      );
      return runStudyOnQueue(join(root, 'probe.yaml'), createCatalog(builtinPlugins()), {
        queue,
        out: join(root, 'probe-out'),
        log: (l) => lines.push(l),
      });
    };
    const lines: string[] = [];
    const knnOnly = await study('');
    expect(knnOnly.failed).toEqual([]);
    expect(knnOnly.results[0]!.linear).toBeUndefined();
    const weights = join(knnOnly.results[0]!.runPath, 'state', 'final.bin');
    const trained = statSync(weights).mtimeMs;
    const probed = await study('evaluate: { linear: true, epochs: 2, trainSize: 512 }\n');
    expect(probed.failed).toEqual([]);
    expect(lines.join('\n')).toContain('1 finished ones queued again for the linear probe');
    const [r] = probed.results;
    expect(r!.linear).toBeGreaterThan(0.1); // 10 classes: chance is 0.1
    expect(r).toMatchObject({ linearEpochs: 2, linearTrainSize: 512, linearSubset: true });
    expect([r!.steps, r!.knn]).toEqual([knnOnly.results[0]!.steps, knnOnly.results[0]!.knn]);
    expect(statSync(weights).mtimeMs).toBe(trained); // the training was not run again
    expect(existsSync(join(r!.runPath, 'eval', 'linear-subset.json'))).toBe(true);
    expect(
      readFileSync(join(root, 'probe-out', 'results.jsonl'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(1);
    killGroup(w.proc, 'SIGTERM');
  });

  it('an unreachable Redis is a clear error', async () => {
    const port = await freePort();
    const t0 = performance.now();
    const e = await runStudyOnQueue(join(root, 'study.yaml'), createCatalog(builtinPlugins()), {
      queue: `redis://127.0.0.1:${port}`,
      log: () => {},
    }).catch((x: unknown) => x);
    expect((e as Error).message).toContain(`Redis at 127.0.0.1:${port} is unreachable`);
    expect((e as Error).message).toContain('without --queue');
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});
