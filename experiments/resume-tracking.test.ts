import { spawn } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadExperiment } from '@contrast/core';
import { builtinPlugins } from '@contrast/cli';
import { checkpointDir, createCatalog, listCheckpoints, runExperiment } from '@contrast/trainer';
import {
  artifactProxyPath,
  freePort,
  MlflowClient,
  MlflowServer,
  type Run,
} from '@contrast/tracking';
import { cli } from './cli.js';
import { mlflowFixture } from './fixtures.js';

/**
 * Resume keeps the tracking a run started with, and `contrast sync` brings the
 * server to the run folder's truth; real `contrast train` processes killed with
 * SIGKILL, a real MLflow server read back over REST.
 */
const repo = join(import.meta.dirname, '..');
const STEPS = 64; // one epoch of 4096 / 64
const BASE = `name: resume-tracking
data: { trainSubset: 4096 }
model: { encoder: convnet, width: 1, dim: 16 }
strategy: { name: momentum-queue, queueSize: 128, momentum: 0.99 }
optim: { batchSize: 64, epochs: 1 }
eval: { knn: { every: 1, testSize: 200, bankSize: 512 }, baselines: false }
checkpoint: { every: 8 }
tracking: { uploadEvery: 0.2, uploadWait: 60 }
`;

const only = (dir: string) => join(dir, readdirSync(dir)[0]!);
const readJson = (file: string) =>
  JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;

/** `contrast <args>` in a child process with exactly this MLFLOW_TRACKING_URI (undefined: unset). */
function contrast(args: string[], trackingUri: string | undefined) {
  const env = { ...process.env };
  delete env.MLFLOW_TRACKING_URI;
  if (trackingUri !== undefined) env.MLFLOW_TRACKING_URI = trackingUri;
  const child = spawn(process.execPath, [join(repo, 'packages/cli/dist/bin.js'), ...args], {
    cwd: repo,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let exit: number | string | undefined;
  const exited = new Promise<{ code: number | string; stderr: string }>((r) =>
    child.on('exit', (code, signal) => {
      exit = code ?? signal ?? -1;
      r({ code: exit, stderr });
    }),
  );
  return { child, exited, running: () => exit === undefined };
}

/** `contrast train` tracked through MLFLOW_TRACKING_URI, SIGKILLed once it has a checkpoint and an MLflow run. */
async function trainAndKill(runsDir: string, base: string, name: string, uri: string) {
  const args = ['train', base, '--quiet', `--set=name=${name}`, `--set=tracking.dir=${runsDir}`];
  const train = contrast(args, uri);
  const until = Date.now() + 180_000;
  while (train.running() && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 10));
    if (!existsSync(runsDir) || readdirSync(runsDir).length === 0) continue;
    const run = only(runsDir);
    const state = join(run, 'mlflow.json');
    if (!listCheckpoints(checkpointDir(run))[0] || !existsSync(state)) continue;
    if (readJson(state).runId) {
      train.child.kill('SIGKILL'); // a checkpoint to resume from, and a RUNNING MLflow run
      break;
    }
  }
  const { code, stderr } = await train.exited;
  expect(code, stderr).toBe('SIGKILL');
  const run = only(runsDir);
  expect(readJson(join(run, 'summary.json')).status).toBe('running'); // killed mid-run
  return run;
}

/** Every step 0..STEPS-1 once in the server's loss history. */
async function expectEveryStepOnce(client: MlflowClient, runId: string) {
  const loss = await client.getMetricHistory(runId, 'loss');
  expect(loss.map((m) => m.step).sort((a, b) => a - b)).toEqual(
    Array.from({ length: STEPS }, (_, i) => i),
  );
}

async function runsOf(client: MlflowClient, experiment: string): Promise<Run[]> {
  const exp = await client.getExperimentByName(experiment);
  return exp ? client.searchRuns([exp.experiment_id]) : [];
}

/** The server's run agrees with summary.json: status and end time. */
function expectEnded(run: Run, runPath: string, status: string) {
  const summary = readJson(join(runPath, 'summary.json'));
  expect(run.info.status).toBe(status);
  expect(Number(run.info.end_time)).toBe(Date.parse(String(summary.ended)));
}

describe('resume keeps its tracking; sync brings the server to the run folder', () => {
  let root: string;
  let base: string;
  let server: MlflowServer;
  let client: MlflowClient;
  const saved = process.env.MLFLOW_TRACKING_URI;

  beforeAll(async () => {
    ({ root, base, server, client } = await mlflowFixture('contrast-resume-tracking-', BASE));
  }, 180_000);
  afterAll(async () => {
    if (saved === undefined) delete process.env.MLFLOW_TRACKING_URI;
    else process.env.MLFLOW_TRACKING_URI = saved;
    await server?.stop();
  });

  it('tracked through MLFLOW_TRACKING_URI, killed, resumed without the variable: the same MLflow run finishes', async () => {
    const runPath = await trainAndKill(join(root, 'a'), base, 'rt-env', server.uri);
    const { runId } = readJson(join(runPath, 'mlflow.json')) as { runId: string };
    expect((await client.getRun(runId)).info.status).toBe('RUNNING');

    const resumed = await contrast(['train', '--resume', runPath, '--quiet'], undefined).exited; // a shell without the variable
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(
      `[tracking] tracking continues on ${server.uri} (recorded in the run folder).`,
    );
    expect((await runsOf(client, 'rt-env')).map((r) => r.info.run_id)).toEqual([runId]);
    const run = await client.getRun(runId);
    expectEnded(run, runPath, 'FINISHED');
    await expectEveryStepOnce(client, runId);

    // the upload cursor ahead of the server (as after restoring its database from a backup):
    // sync reads the run back, names what differs, and does not say complete
    const statePath = join(runPath, 'mlflow.json');
    const metricsPath = join(runPath, 'metrics.jsonl');
    const state = readFileSync(statePath, 'utf8');
    const record = { step: STEPS, epoch: 1, linear_top1: 0.5, time: Date.now() / 1000 }; // as eval linear writes
    appendFileSync(metricsPath, `${JSON.stringify(record)}\n`);
    writeFileSync(
      statePath,
      JSON.stringify({ ...JSON.parse(state), metricsOffset: statSync(metricsPath).size }),
    );
    const disagrees = await cli(['sync', runPath]);
    expect(disagrees.code).toBe(2);
    expect(disagrees.stderr).toContain(
      `still differs from the run folder: metric linear_top1: latest on the server is missing, the folder has 0.5 at step ${STEPS}`,
    );
    expect(disagrees.stdout).not.toContain('complete');
    writeFileSync(statePath, state); // the cursor back where the server is: sync mends it
    const mended = await cli(['sync', runPath]);
    expect(mended.code, mended.stderr).toBe(0);
    expect(mended.stdout).toContain('complete, status FINISHED');
    expect(mended.stdout).toContain('changed: 1 metric records');
  });

  it('killed: sync leaves it RUNNING; resumed with tracking.uri=off (the variable pointing elsewhere): untracked, said so; sync then finishes the MLflow run from the folder', async () => {
    const runPath = await trainAndKill(join(root, 'b'), base, 'rt-off', server.uri);
    const { runId } = readJson(join(runPath, 'mlflow.json')) as { runId: string };
    // the folder says running: sync uploads what is there, leaves the status, never says complete
    const synced = await cli(['sync', runPath]);
    expect(synced.code, synced.stderr).toBe(0);
    expect(synced.stdout).toContain(`MLflow run ${runId}`);
    expect(synced.stdout).toContain('status left RUNNING');
    expect(synced.stdout).toContain(`contrast train --resume ${runPath}`);
    expect(synced.stdout).not.toContain('complete');

    const resumed = await contrast(
      ['train', '--resume', runPath, '--quiet', '--set=tracking.uri=off'],
      `http://127.0.0.1:${await freePort()}`,
    ).exited;
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain('[tracking] MLflow tracking off (tracking.uri=off)');
    expect(resumed.stderr).not.toContain('[mlflow]');
    expect((await client.getRun(runId)).info.status).toBe('RUNNING'); // untouched

    const first = await cli(['sync', runPath]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`MLflow run ${runId}`);
    expect(first.stdout).toContain('complete, status FINISHED');
    expect(first.stdout).toMatch(/changed: .*\d+ metric records/);
    expect(first.stdout).toContain('artifacts summary.json, state/final.bin');
    expect(first.stdout).toContain('status RUNNING -> FINISHED, end time');
    const run = await client.getRun(runId);
    expectEnded(run, runPath, 'FINISHED');
    await expectEveryStepOnce(client, runId);
    const summary = await client.downloadArtifact(run.info.artifact_uri, 'summary.json');
    expect(Buffer.from(summary).toString()).toBe(
      readFileSync(join(runPath, 'summary.json'), 'utf8'),
    );
    const ckpt = await client.listArtifacts(run.info.artifact_uri, 'state');
    expect(ckpt.map((f) => [f.path, Number(f.file_size)])).toEqual([
      ['final.bin', statSync(join(runPath, 'state/final.bin')).size],
    ]);

    const second = await cli(['sync', runPath]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('nothing to change: the server already matched the run folder');
    expect(second.stdout).toContain('0 metric records uploaded now');

    // a file the server lost is found by reading the run back, and uploaded again
    const stored = join(root, 'server', 'artifacts', artifactProxyPath(run.info.artifact_uri));
    rmSync(join(stored, 'summary.json'));
    const third = await cli(['sync', runPath]);
    expect(third.code, third.stderr).toBe(0);
    expect(third.stdout).toContain(
      'changed: artifacts summary.json again (the server did not have them)',
    );
    expect(third.stdout).toContain('complete, status FINISHED');
    expect(readFileSync(join(stored, 'summary.json'), 'utf8')).toBe(
      readFileSync(join(runPath, 'summary.json'), 'utf8'),
    );
  });

  it('an explicit tracking.uri moves a resumed run to another server: a new MLflow run there gets the whole folder', async () => {
    const other = await MlflowServer.start({ dir: join(root, 'other-server') });
    try {
      const config = loadExperiment(base, [`tracking.dir=${join(root, 'c')}`, 'name=rt-move']);
      const catalog = createCatalog(builtinPlugins());
      process.env.MLFLOW_TRACKING_URI = server.uri;
      let polls = 0;
      const first = await runExperiment(config, catalog, {
        progress: false,
        log: () => {},
        shouldStop: () => ++polls > 12, // stopped after 12 steps, as Ctrl-C does
      });
      expect(first.result.status).toBe('interrupted');
      const old = readJson(join(first.runPath, 'mlflow.json')) as { runId: string };

      const lines: string[] = [];
      const resumed = await runExperiment(
        loadExperiment(join(first.runPath, 'config.yaml'), [`tracking.uri=${other.uri}`]),
        catalog,
        { progress: false, log: (l) => lines.push(l), resumeFrom: { runPath: first.runPath } },
      );
      expect(resumed.result.status).toBe('finished');
      expect(lines).toContain(
        `[tracking] tracking.uri=${other.uri} given: overrides the run folder's ${server.uri}: a new MLflow run there gets the whole run folder`,
      );
      const otherClient = new MlflowClient(other.uri, { auth: {} });
      let moved = await runsOf(otherClient, 'rt-move');
      // seen once in CI: the run read back RUNNING right after the resumed run returned
      // (the cause is not known); the status must be FINISHED within a few seconds
      for (let i = 0; i < 20 && moved[0]?.info.status === 'RUNNING'; i++) {
        await new Promise((r) => setTimeout(r, 500));
        moved = await runsOf(otherClient, 'rt-move');
      }
      expect(moved).toHaveLength(1);
      expect(moved[0]!.info.status, lines.join('\n')).toBe('FINISHED');
      expectEnded(moved[0]!, first.runPath, 'FINISHED');
      await expectEveryStepOnce(otherClient, moved[0]!.info.run_id);
      const left = await client.getRun(old.runId); // the first server's run is left as it was
      expect(left.info.status).toBe('KILLED');
      expect(await client.getMetricHistory(old.runId, 'loss')).toHaveLength(12);
    } finally {
      await other.stop();
    }
  });
});
