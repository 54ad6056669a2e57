import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DivergedError,
  loadExperiment,
  RUN_SETTINGS,
  TrackingError,
  type ExperimentConfig,
} from '@contrast/core';
import { builtinPlugins, runStudyParallel } from '@contrast/cli';
import { runStudy } from '@contrast/study';
import { createCatalog, evaluateRun, runExperiment } from '@contrast/trainer';
import {
  artifactProxyPath,
  EXPERIMENT_KIND_TAG,
  fitParams,
  freePort,
  LocalRunTracker,
  MlflowTracker,
  MlflowClient,
  MlflowServer,
  MlflowUploader,
  mlflowUiUrl,
  splitParams,
  syncRuns,
  SYSTEM_METRICS,
  type Run,
} from '@contrast/tracking';
import { cli } from './cli.js';
import { mlflowFixture } from './fixtures.js';

/**
 * Contrast against a real `mlflow server` (sqlite store, proxied artifacts),
 * read back through the REST API.
 */
const repo = join(import.meta.dirname, '..');
const PER_STEP = ['loss', 'lr', 'momentum', 'pretext_accuracy', 'img_per_sec'];
const BASE = `name: mlflow-tiny
data: { trainSubset: 512 }
model: { encoder: convnet, width: 0.25, dim: 16 }
strategy: { name: momentum-queue, queueSize: 64, momentum: 0.99 }
optim: { batchSize: 32, epochs: 1, maxSteps: 10 }
eval: { knn: { every: 1, testSize: 200, bankSize: 512 }, baselines: false }
`;

const tags = (run: Run) => Object.fromEntries((run.data.tags ?? []).map((t) => [t.key, t.value]));
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const localRecords = (runPath: string) =>
  readFileSync(join(runPath, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);

/** Every per-step metric has exactly one point per step 0..steps-1: nothing missing, nothing twice. */
async function expectEveryStepOnce(client: MlflowClient, runId: string, steps: number) {
  for (const key of PER_STEP) {
    const history = await client.getMetricHistory(runId, key);
    expect(history, key).toHaveLength(steps);
    expect(
      history.map((m) => m.step).sort((a, b) => a - b),
      key,
    ).toEqual(range(steps));
  }
}

describe('MLflow tracking against a real server', () => {
  let root: string;
  let server: MlflowServer;
  let client: MlflowClient;
  let base: string;
  const catalog = createCatalog(builtinPlugins());
  const tiny = (sets: string[]): ExperimentConfig => loadExperiment(base, sets);
  let firstRun: { runPath: string; config: ExperimentConfig } | undefined;

  beforeAll(async () => {
    process.env.MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL = '1'; // MLflow's variable: 1 s, not 10
    ({ root, base, server, client } = await mlflowFixture('contrast-mlflow-', BASE));
  }, 180_000);

  afterAll(async () => {
    delete process.env.MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL;
    await server?.stop();
  });

  it('a short run logs params, every metric point, tags, its dataset and artifacts', async () => {
    const config = tiny([
      `tracking.dir=${join(root, 'runs')}`,
      `tracking.uri=${server.uri}`,
      'name=mlflow-e2e',
    ]);
    const lines: string[] = [];
    const { runPath, result } = await runExperiment(config, catalog, {
      progress: false,
      log: (l) => lines.push(l),
    });
    firstRun = { runPath, config };
    expect(lines.filter((l) => l.includes('[mlflow]'))).toEqual([]); // no warnings on the happy path

    const exp = await client.getExperimentByName('mlflow-e2e');
    expect(exp).toBeDefined();
    // a model-training experiment: the UI opens its runs, not the GenAI view
    expect(exp!.tags).toContainEqual({
      key: 'mlflow.experimentKind',
      value: 'custom_model_development',
    });
    const runs = await client.searchRuns([exp!.experiment_id]);
    expect(runs).toHaveLength(1);
    const run = runs[0]!;
    expect(run.info.status).toBe('FINISHED');
    expect(lines).toContain(
      `[tracking] MLflow run ${server.uri}/#/experiments/${exp!.experiment_id}/runs/${run.info.run_id}?workflowType=machine_learning`,
    );
    expect(run.info.run_name).toBe(basename(runPath));
    const summary = JSON.parse(readFileSync(join(runPath, 'summary.json'), 'utf8'));
    expect(summary.mlflow.runId).toBe(run.info.run_id);

    // params: the hyperparameters of the resolved config (as trained: the method's loss
    // defaults filled in), once each; run settings (where it is stored, tracked, measured) are tags
    const params = Object.fromEntries((run.data.params ?? []).map((p) => [p.key, p.value]));
    const trained = loadExperiment(join(runPath, 'config.yaml'));
    expect(Object.keys(params).sort()).toEqual(
      splitParams(trained, RUN_SETTINGS)
        .params.map((p) => p.key)
        .sort(),
    );
    expect(params['loss.temperature']).toBe('0.1');
    expect(params['optim.lr']).toBe(String(config.optim.lr));
    expect(params['strategy.name']).toBe('momentum-queue');
    expect(params['model.width']).toBe('0.25');
    expect(params['data.trainSubset']).toBe('512');
    expect(params['seed']).toBe('0');
    const machineLocal =
      /^(name|plugins|tracking\.|checkpoint\.|eval\.|data\.(root|prefetch|strict))/;
    expect(Object.keys(params).filter((k) => machineLocal.test(k))).toEqual([]);
    const runTags = tags(run);
    expect(runTags['tracking.dir']).toBe(join(root, 'runs'));
    expect(runTags['tracking.uri']).toBe(server.uri);
    expect(runTags['tracking.uploadWait']).toBe('20');
    expect(runTags['eval.knn.testSize']).toBe('200');
    expect(runTags['data.prefetch']).toBe('2');

    // system metrics under MLflow's names: at least the sample at the end of this short run
    // (the fault test's longer run checks the samples taken during training)
    for (const key of Object.values(SYSTEM_METRICS)) {
      const points = await client.getMetricHistory(run.info.run_id, key);
      expect(points.length, key).toBeGreaterThanOrEqual(1);
      for (const p of points) {
        expect(p.value, key).toBeGreaterThanOrEqual(0);
        expect(p.step, key).toBeLessThanOrEqual(result.steps);
      }
    }
    const rss = await client.getMetricHistory(run.info.run_id, SYSTEM_METRICS.processRssMb);
    expect(Math.max(...rss.map((p) => p.value))).toBeGreaterThan(50); // tfjs-node alone is larger
    const cpu = await client.getMetricHistory(run.info.run_id, SYSTEM_METRICS.cpu);
    expect(Math.max(...cpu.map((p) => p.value))).toBeLessThanOrEqual(100);

    // metrics: every step, with the values written locally
    expect(result.steps).toBe(10);
    await expectEveryStepOnce(client, run.info.run_id, result.steps);
    const loss = await client.getMetricHistory(run.info.run_id, 'loss');
    const local = localRecords(runPath).filter((r) => r.loss !== undefined);
    expect(loss.sort((a, b) => a.step - b.step).map((m) => m.value)).toEqual(
      local.map((r) => r.loss),
    );
    const momentum = await client.getMetricHistory(run.info.run_id, 'momentum');
    expect(new Set(momentum.map((m) => m.value))).toEqual(new Set([0.99]));
    const knn = await client.getMetricHistory(run.info.run_id, 'knn_accuracy');
    expect(knn).toHaveLength(result.knnPerEpoch.length);
    expect(knn[knn.length - 1]!.value).toBeCloseTo(result.knn.trained, 6);

    // system tags
    const t = tags(run);
    expect(t['mlflow.runName']).toBe(basename(runPath));
    expect(t['mlflow.source.type']).toBe('LOCAL');
    expect(t['mlflow.source.name']).toBeTruthy();
    expect(t['mlflow.user']).toBeTruthy();
    expect(t['contrast.run_dir']).toBe(basename(runPath));
    if (existsSync(join(repo, '.git')))
      expect(t['mlflow.source.git.commit']).toMatch(/^[0-9a-f]{40}$/);

    // the dataset as a run input
    const full = await client.getRun(run.info.run_id);
    const input = full.inputs?.dataset_inputs?.[0];
    expect(input?.dataset.name).toBe('fashion-mnist');
    expect(input?.dataset.digest).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.parse(input!.dataset.source)).toMatchObject({ split: 'train', n: 512 });
    expect(input?.tags).toContainEqual({ key: 'mlflow.data.context', value: 'train' });

    // artifacts: resolved YAML, summary, final state (byte for byte), at the run folder's paths
    const top = await client.listArtifacts(run.info.artifact_uri);
    expect(top.map((f) => f.path).sort()).toEqual(['config.yaml', 'state', 'summary.json']);
    const state = await client.listArtifacts(run.info.artifact_uri, 'state');
    expect(state).toEqual([
      {
        path: 'final.bin',
        is_dir: false,
        file_size: statSync(join(runPath, 'state/final.bin')).size,
      },
    ]);
    const yaml = await client.downloadArtifact(run.info.artifact_uri, 'config.yaml');
    expect(Buffer.from(yaml).toString()).toBe(readFileSync(join(runPath, 'config.yaml'), 'utf8'));
  });

  it('a run uploaded with its final state as checkpoints/final.bin keeps that artifact through contrast sync', async () => {
    const { runPath } = firstRun!;
    const runId = (
      JSON.parse(readFileSync(join(runPath, 'summary.json'), 'utf8')) as {
        mlflow: { runId: string };
      }
    ).mlflow.runId;
    const uri = (await client.getRun(runId)).info.artifact_uri;
    // what an earlier version left: the server's copy and mlflow.json's entry under the old name
    const stored = join(root, 'server', 'artifacts', artifactProxyPath(uri));
    mkdirSync(join(stored, 'checkpoints'));
    renameSync(join(stored, 'state', 'final.bin'), join(stored, 'checkpoints', 'final.bin'));
    rmSync(join(stored, 'state'), { recursive: true });
    const statePath = join(runPath, 'mlflow.json');
    const saved = JSON.parse(readFileSync(statePath, 'utf8')) as { artifacts: { name: string }[] };
    saved.artifacts.find((a) => a.name === 'state/final.bin')!.name = 'checkpoints/final.bin';
    writeFileSync(statePath, JSON.stringify(saved));
    const listing = async () => (await client.listArtifacts(uri)).map((f) => f.path).sort();

    const first = await cli(['sync', runPath]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('complete, status FINISHED');
    expect(first.stdout).not.toContain('final.bin'); // not uploaded again, under neither name
    expect(await listing()).toEqual(['checkpoints', 'config.yaml', 'summary.json']); // no second copy
    // a rewritten final state goes up again under the run's own (old) name
    const later = new Date(Date.now() + 5_000);
    utimesSync(join(runPath, 'state/final.bin'), later, later);
    const second = await cli(['sync', runPath]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('changed: artifacts checkpoints/final.bin');
    expect(await listing()).toEqual(['checkpoints', 'config.yaml', 'summary.json']);
    const names = (
      JSON.parse(readFileSync(statePath, 'utf8')) as { artifacts: { name: string }[] }
    ).artifacts.map((a) => a.name);
    expect(names.filter((n) => n.endsWith('final.bin'))).toEqual(['checkpoints/final.bin']);
  });

  it("the UI links carry MLflow 3.17's workflowType=machine_learning (its UI picks the view from that route parameter, not from the experiment tag)", async () => {
    const dir = mkdtempSync(join(root, 'ui-run-'));
    const u = MlflowUploader.create(
      dir,
      { uri: server.uri, experimentName: 'mlflow-ui', runName: 'ui-run', tags: [] },
      { warn: () => {} },
    );
    await u.pump();
    const experimentId = u.state.experimentId!;
    const exp = await client.getExperimentByName('mlflow-ui');
    expect(exp!.tags).toContainEqual(EXPERIMENT_KIND_TAG);
    const runUrl = u.runUrl()!;
    expect(runUrl).toBe(
      `${server.uri}/#/experiments/${experimentId}/runs/${u.state.runId}?workflowType=machine_learning`,
    );
    expect(mlflowUiUrl(server.uri, experimentId)).toBe(
      `${server.uri}/#/experiments/${experimentId}?workflowType=machine_learning`,
    );
  }, 120_000);

  it('a failed run is FAILED with its coded reason as tags', async () => {
    const config = tiny([
      `tracking.dir=${join(root, 'failed-runs')}`,
      `tracking.uri=${server.uri}`,
      'name=mlflow-failed',
      'optim.lr=1e30', // diverges within a few steps
    ]);
    const e = await runExperiment(config, catalog, { progress: false, log: () => {} }).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(DivergedError);
    const exp = await client.getExperimentByName('mlflow-failed');
    const [run, ...more] = await client.searchRuns([exp!.experiment_id]);
    expect(more).toEqual([]);
    expect(run!.info.status).toBe('FAILED');
    const t = tags(run!);
    expect(t['contrast.error_code']).toBe('CONTRAST_DIVERGED');
    expect(t['contrast.error']).toBe(`CONTRAST_DIVERGED: ${(e as Error).message}`);
    expect(t['contrast.error']).toMatch(/the loss became .* at step \d+\n {2}fix: lower optim.lr/s);
  });

  it('an address that is not an MLflow server is refused before the run, with the fix', async () => {
    const web = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<!doctype html><html><head><title>Not Found</title></head><body>nope</body></html>');
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', () => r()));
    const addr = web.address();
    const uri = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    const runsDir = join(root, 'wrong-server-runs');
    try {
      const e = (await runExperiment(
        tiny([`tracking.dir=${runsDir}`, `tracking.uri=${uri}`, 'name=mlflow-wrong-server']),
        catalog,
        { progress: false, log: () => {} },
      ).catch((x: unknown) => x)) as TrackingError;
      expect(e).toBeInstanceOf(TrackingError);
      expect(e.code).toBe('CONTRAST_TRACKING');
      expect(e.retryable).toBe(false);
      expect(e.message).toContain(`${uri} is not an MLflow tracking server`);
      expect(e.message).toContain("HTTP 404 with an HTML page ('Not Found')");
      expect(e.message).not.toContain('<html');
      expect(e.hint).toContain('tracking.uri');
      expect(existsSync(runsDir) ? readdirSync(runsDir) : []).toEqual([]); // no run started
    } finally {
      await new Promise<void>((r) => web.close(() => r()));
    }
  });

  it('a resumed run continues the same MLflow run', async () => {
    expect(firstRun).toBeDefined();
    const { runPath } = firstRun!;
    const runId = JSON.parse(readFileSync(join(runPath, 'mlflow.json'), 'utf8')).runId as string;
    const tracker = new MlflowTracker(
      new LocalRunTracker({ path: runPath, id: basename(runPath) }),
      {
        uri: server.uri,
        experimentName: 'mlflow-e2e',
        runName: basename(runPath),
        warn: () => {},
      },
    );
    expect(tracker.uploader.state.runId).toBe(runId);
    tracker.logMetrics({
      step: 10,
      epoch: 1,
      loss: 0.5,
      lr: 0.03,
      momentum: 0.99,
      pretext_accuracy: 0.5,
      img_per_sec: 1,
    });
    await tracker.close('finished');
    const exp = await client.getExperimentByName('mlflow-e2e');
    const runs = await client.searchRuns([exp!.experiment_id]);
    expect(runs.map((r) => r.info.run_id)).toEqual([runId]);
    expect(runs[0]!.info.status).toBe('FINISHED');
    await expectEveryStepOnce(client, runId, 11);

    // contrast eval knn on a subset: recorded beside the headline, never over it
    const trainedKnn = await client.getMetricHistory(runId, 'knn_accuracy');
    const lines: string[] = [];
    const subset = await evaluateRun(runPath, 'knn', catalog, {
      knn: { bankSize: 512, testSize: 200 },
      log: (l) => lines.push(l),
    });
    expect(await client.getMetricHistory(runId, 'knn_accuracy')).toEqual(trainedKnn);
    const [point] = await client.getMetricHistory(runId, 'knn_accuracy_subset');
    expect(point!.value).toBe(subset.results.knn_accuracy_subset);
    const run = await client.getRun(runId);
    expect(lines).toContain(
      `[tracking] MLflow run ${server.uri}/#/experiments/${run.info.experiment_id}/runs/${runId}?workflowType=machine_learning`,
    );
  });

  it('eval knn on a subset is stored beside the full-split headline, never over it', async () => {
    const config = tiny([
      `tracking.dir=${join(root, 'runs')}`,
      `tracking.uri=${server.uri}`,
      'name=mlflow-subset',
    ]);
    const { runPath } = await runExperiment(config, catalog, { progress: false, log: () => {} });
    const runId = JSON.parse(readFileSync(join(runPath, 'mlflow.json'), 'utf8')).runId as string;
    // MLflow's latest value: the highest step, then the newest point
    const latest = async (key: string) =>
      (await client.getMetricHistory(runId, key)).reduce((a, b) =>
        b.step > a.step || (b.step === a.step && b.timestamp >= a.timestamp) ? b : a,
      ).value;
    const full = await evaluateRun(runPath, 'knn', catalog, { log: () => {} });
    expect(full.subset).toBe(false);
    expect(full.file).toBe(join(runPath, 'eval', 'knn.json'));
    expect(full.results).toMatchObject({ bank_size: 60000, test_size: 10000 });
    expect(await latest('knn_accuracy')).toBe(full.results.knn_accuracy);
    const subset = await evaluateRun(runPath, 'knn', catalog, {
      knn: { bankSize: 300, testSize: 100 },
      log: () => {},
    });
    expect(subset.subset).toBe(true);
    expect(subset.file).toBe(join(runPath, 'eval', 'knn-subset.json'));
    expect(subset.results.knn_accuracy_subset).not.toBe(full.results.knn_accuracy);
    // the headline is untouched, in MLflow, eval/knn.json and summary.json
    expect(await latest('knn_accuracy')).toBe(full.results.knn_accuracy);
    expect(await latest('knn_accuracy_subset')).toBe(subset.results.knn_accuracy_subset);
    const doc = JSON.parse(readFileSync(join(runPath, 'eval', 'knn.json'), 'utf8'));
    expect(doc.knn_accuracy).toBe(full.results.knn_accuracy);
    const summary = JSON.parse(readFileSync(join(runPath, 'summary.json'), 'utf8'));
    expect(summary.eval_results.knn.knn_accuracy).toBe(full.results.knn_accuracy);
    expect(summary.eval_results.knn_subset).toMatchObject({
      knn_accuracy_subset: subset.results.knn_accuracy_subset,
      knn_subset_bank_size: 300,
      knn_subset_test_size: 100,
    });
    const run = await client.getRun(runId);
    const knnKeys = (run.data.metrics ?? []).map((m) => m.key).filter((k) => k.startsWith('knn_'));
    expect(knnKeys.sort()).toEqual([
      'knn_accuracy',
      'knn_accuracy_subset',
      'knn_subset_bank_size',
      'knn_subset_test_size',
    ]);
    // the subset's sizes are queryable
    const found = await client.searchRuns(
      [run.info.experiment_id],
      'metrics.knn_subset_bank_size = 300 and metrics.knn_subset_test_size = 100',
    );
    expect(found.map((r) => r.info.run_id)).toEqual([runId]);

    // a probe on 1,000 of 60,000 training images: a subset too, with its selected lr
    const probe = await evaluateRun(runPath, 'linear', catalog, {
      probe: { epochs: 2 },
      trainSize: 1000,
      log: () => {},
    });
    expect(probe.subset).toBe(true);
    const lr = probe.results.linear_lr_subset!;
    expect([0.1, 0.3, 1, 3, 10, 30]).toContain(lr);
    const after = await client.getRun(runId);
    const metric = (key: string) => after.data.metrics?.find((m) => m.key === key)?.value;
    expect(metric('linear_top1')).toBeUndefined();
    expect(metric('linear_top1_subset')).toBe(probe.results.linear_top1_subset);
    expect(metric('linear_lr_subset')).toBe(lr);
    expect(metric('linear_subset_train_size')).toBe(1000);
    expect(tags(after)['contrast.eval.linear_subset_lr']).toMatch(
      new RegExp(`^${lr}: lr selected from 0.1, 0.3, 1, 3, 10, 30 on 10% of the training images`),
    );
  }, 120_000);

  it('a 400 answer names the key and is not retried forever; an over-long param is cut to fit', async () => {
    expect(firstRun).toBeDefined();
    const { runPath } = firstRun!;
    // change a logged param, as a resumed run with an edited config would
    const yamlPath = join(runPath, 'config.yaml');
    writeFileSync(yamlPath, readFileSync(yamlPath, 'utf8').replace(/^( {2}lr:) .*$/m, '$1 0.5'));
    const statePath = join(runPath, 'mlflow.json');
    const state = JSON.parse(readFileSync(statePath, 'utf8'));
    writeFileSync(statePath, JSON.stringify({ ...state, paramsDone: false }));
    const t0 = performance.now();
    const e = (await syncRuns(runPath, { warn: () => {} }).catch(
      (x: unknown) => x,
    )) as TrackingError;
    expect(e).toBeInstanceOf(TrackingError);
    expect(e.mlflowCode).toBe('INVALID_PARAMETER_VALUE');
    expect(e.message).toContain('optim.lr');
    expect(performance.now() - t0).toBeLessThan(10_000);
    const { code, stderr } = await cli(['sync', runPath]);
    expect(code).toBe(2);
    expect(stderr).toContain('CONTRAST_TRACKING');

    const { params, truncated } = fitParams([{ key: 'note', value: 'y'.repeat(7000) }]);
    expect(truncated).toEqual(['note']);
    await client.logBatch(state.runId, { params });
    const run = await client.getRun(state.runId);
    expect(run.data.params?.find((p) => p.key === 'note')?.value).toHaveLength(6000);
  });

  it('a two-config study: one parent run and two children linked by mlflow.parentRunId; a re-run adds none', async () => {
    const dir = join(root, 'study');
    mkdirSync(dir);
    writeFileSync(join(dir, 'base.yaml'), `${BASE}tracking: { uri: '${server.uri}' }\n`);
    const file = join(dir, 'study.yaml');
    writeFileSync(
      file,
      `name: mlflow-sweep
base: base.yaml
series:
  - label: momentum-queue
    points:
      - { k: 64 }
      - { k: 128, set: { strategy.queueSize: 128 } }
`,
    );
    const out = join(dir, 'out');
    await runStudy(file, catalog, { out, progress: false, log: () => {} });
    const exp = await client.getExperimentByName('mlflow-sweep');
    const runs = await client.searchRuns([exp!.experiment_id]);
    expect(runs).toHaveLength(3);
    const parents = runs.filter((r) => !tags(r)['mlflow.parentRunId']);
    expect(parents).toHaveLength(1);
    const parent = parents[0]!;
    const children = runs.filter((r) => tags(r)['mlflow.parentRunId'] === parent.info.run_id);
    expect(children).toHaveLength(2);
    expect(
      new Set(
        children.map((c) => c.data.params?.find((p) => p.key === 'strategy.queueSize')?.value),
      ),
    ).toEqual(new Set(['64', '128']));
    for (const r of runs) expect(r.info.status).toBe('FINISHED');
    for (const c of children) await expectEveryStepOnce(client, c.info.run_id, 10);
    // the parent's summary: best kNN overall and per series, the series along the x axis
    const knnOf = new Map(
      readFileSync(join(out, 'results.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { k: number; knn: number })
        .map((r) => [r.k, r.knn]),
    );
    const best = Math.max(...knnOf.values());
    const latest = new Map((parent.data.metrics ?? []).map((m) => [m.key, m.value]));
    expect(latest.get('best_knn_accuracy')).toBeCloseTo(best, 12);
    expect(latest.get('best_knn_accuracy/momentum-queue')).toBeCloseTo(best, 12);
    const curve = await client.getMetricHistory(parent.info.run_id, 'knn_accuracy/momentum-queue');
    expect(curve.map((m) => [m.step, m.value]).sort((a, b) => a[0]! - b[0]!)).toEqual([
      [0, expect.closeTo(knnOf.get(64)!, 12)],
      [1, expect.closeTo(knnOf.get(128)!, 12)],
    ]);
    expect(tags(parent)['contrast.study.x_steps']).toBe('0: 64, 1: 128');
    const lastChildEnd = Math.max(...children.map((c) => Number(c.info.end_time)));
    const parentEnd = Number(parent.info.end_time);
    expect(parentEnd).toBeGreaterThanOrEqual(lastChildEnd);
    expect(parentEnd - lastChildEnd).toBeLessThan(30_000); // the report, not idle time
    const files = (await client.listArtifacts(parent.info.artifact_uri)).map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(['table.md', 'results.csv', 'results.jsonl']));
    expect(files.some((f) => f.endsWith('.png'))).toBe(true);

    await new Promise((r) => setTimeout(r, 1100)); // a stretched end time would show
    await runStudy(file, catalog, { out, progress: false, log: () => {} }); // everything done: skipped
    expect(await client.searchRuns([exp!.experiment_id])).toHaveLength(3);
    const again = await client.getRun(parent.info.run_id);
    expect(again.info.status).toBe('FINISHED');
    expect(Number(again.info.end_time)).toBe(parentEnd); // a re-run adds no duration
    expect(again.info.start_time).toBe(parent.info.start_time);
    expect((await client.getMetricHistory(parent.info.run_id, 'best_knn_accuracy')).length).toBe(1); // the unchanged summary is not sent again

    // the same sweep with --parallel 2 (children in their own processes) links the same way
    writeFileSync(
      join(dir, 'par.yaml'),
      readFileSync(file, 'utf8').replace('name: mlflow-sweep', 'name: mlflow-sweep-par'),
    );
    const par = await runStudyParallel(join(dir, 'par.yaml'), catalog, {
      parallel: 2,
      out: join(dir, 'par-out'),
      log: () => {},
    });
    expect(par.failed).toEqual([]);
    const parExp = await client.getExperimentByName('mlflow-sweep-par');
    const parRuns = await client.searchRuns([parExp!.experiment_id]);
    expect(parRuns).toHaveLength(3);
    const parParent = parRuns.find((r) => !tags(r)['mlflow.parentRunId'])!;
    expect(
      parRuns.filter((r) => tags(r)['mlflow.parentRunId'] === parParent.info.run_id),
    ).toHaveLength(2);
    for (const r of parRuns) expect(r.info.status).toBe('FINISHED');
  });

  it('unreachable at start: warns, spools and trains on; contrast sync uploads it all later', async () => {
    const port = await freePort();
    const uri = `http://127.0.0.1:${port}`;
    const lines: string[] = [];
    const { runPath, result } = await runExperiment(
      tiny([
        `tracking.dir=${join(root, 'offline-runs')}`,
        `tracking.uri=${uri}`,
        'tracking.uploadWait=0',
        'name=mlflow-offline',
      ]),
      catalog,
      { progress: false, log: (l) => lines.push(l) },
    );
    expect(result.status).toBe('finished');
    expect(lines.join('\n')).toContain(`${uri} unreachable`);
    expect(lines.join('\n')).toContain(`contrast sync ${runPath}`);
    expect(JSON.parse(readFileSync(join(runPath, 'mlflow.json'), 'utf8')).runId).toBeUndefined();

    const late = await MlflowServer.start({ dir: join(root, 'late-server'), port });
    try {
      const { code, stdout } = await cli(['sync', runPath]);
      expect(code).toBe(0);
      expect(stdout).toContain('complete');
      const lateClient = new MlflowClient(uri, { auth: {} });
      const exp = await lateClient.getExperimentByName('mlflow-offline');
      const runs = await lateClient.searchRuns([exp!.experiment_id]);
      expect(runs).toHaveLength(1);
      expect(runs[0]!.info.status).toBe('FINISHED');
      await expectEveryStepOnce(lateClient, runs[0]!.info.run_id, result.steps);
      // a second sync is a no-op: nothing is sent twice
      expect((await cli(['sync', runPath])).stdout).toContain('0 metric records uploaded now');
      await expectEveryStepOnce(lateClient, runs[0]!.info.run_id, result.steps);
    } finally {
      await late.stop();
    }
  });

  it('contrast sync: a recorded server that is down is a coded error with the fix; --tracking-uri moves a run and a study', async () => {
    const other = await MlflowServer.start({ dir: join(root, 'moved-from-server') });
    const { runPath, result } = await runExperiment(
      tiny([
        `tracking.dir=${join(root, 'moved-runs')}`,
        `tracking.uri=${other.uri}`,
        'name=mlflow-moved',
      ]),
      catalog,
      { progress: false, log: () => {} },
    );
    // a study folder: a parent run and a child linked to it, both on the other server
    const study = join(root, 'moved-study');
    const child = join(study, 'runs', 'child');
    mkdirSync(child, { recursive: true });
    const uploaders = [
      MlflowUploader.create(study, {
        uri: other.uri,
        experimentName: 'mlflow-moved-study',
        runName: 'parent',
        tags: [],
      }),
      MlflowUploader.create(child, {
        uri: other.uri,
        experimentName: 'mlflow-moved-study',
        runName: 'child',
        tags: [],
        parentDir: study,
      }),
    ];
    for (const u of uploaders) {
      u.setStatus('FINISHED', 1_700_000_000_000);
      await u.pump();
    }
    const oldRunId = JSON.parse(readFileSync(join(runPath, 'mlflow.json'), 'utf8')).runId;
    await other.stop();

    // the server the folder records does not answer: the address, the cause and both fixes
    const down = await cli(['sync', runPath]);
    expect(down.code).toBe(2);
    expect(down.stderr).toContain(
      `error [CONTRAST_TRACKING]: ${runPath}: MLflow server at ${other.uri} unreachable (`,
    );
    expect(down.stderr).toContain(
      `ECONNREFUSED: nothing listens on 127.0.0.1:${other.port}); the address is the one the run folder's mlflow.json records`,
    );
    expect(down.stderr).toContain(
      `fix: start the server (mlflow server --host 127.0.0.1 --port ${other.port} ...), or correct the address; then run contrast sync again, or move the run to a server that answers: contrast sync --tracking-uri http://HOST:PORT ${runPath}`,
    );
    expect(down.stderr).not.toContain('TypeError');

    // --tracking-uri: a new run on this server gets the whole folder
    const moved = await cli(['sync', '--tracking-uri', server.uri, runPath]);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toContain(`on ${server.uri} complete, status FINISHED`);
    expect(moved.stdout).toContain('created the MLflow run');
    const exp = await client.getExperimentByName('mlflow-moved');
    const [run, ...more] = await client.searchRuns([exp!.experiment_id]);
    expect(more).toEqual([]);
    expect(run!.info.run_id).not.toBe(oldRunId);
    expect(run!.info.status).toBe('FINISHED');
    await expectEveryStepOnce(client, run!.info.run_id, result.steps);
    const params = Object.fromEntries((run!.data.params ?? []).map((p) => [p.key, p.value]));
    expect(params['strategy.name']).toBe('momentum-queue');
    const files = (await client.listArtifacts(run!.info.artifact_uri)).map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(['config.yaml', 'summary.json', 'state']));
    expect(JSON.parse(readFileSync(join(runPath, 'mlflow.json'), 'utf8')).uri).toBe(server.uri);
    expect(JSON.parse(readFileSync(join(runPath, 'summary.json'), 'utf8')).mlflow).toEqual({
      uri: server.uri,
      experimentId: exp!.experiment_id,
      runId: run!.info.run_id,
    });
    // now on this server: a plain sync finds it complete; MLFLOW_TRACKING_URI elsewhere is pointed out
    process.env.MLFLOW_TRACKING_URI = other.uri;
    try {
      const again = await cli(['sync', runPath]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toContain('nothing to change');
      expect(again.stderr).toContain(
        `MLFLOW_TRACKING_URI=${other.uri} is not used: a run stays on the server its mlflow.json records (${server.uri}); to move it there: contrast sync --tracking-uri ${other.uri} ${runPath}`,
      );
    } finally {
      delete process.env.MLFLOW_TRACKING_URI;
    }

    // a study moves whole: the child links to the parent's new run
    const synced = await syncRuns(study, { trackingUri: server.uri, warn: () => {} });
    expect(synced.map((r) => [r.dir, r.uri, r.complete])).toEqual([
      [study, server.uri, true],
      [child, server.uri, true],
    ]);
    const childRun = await client.getRun(synced[1]!.runId);
    expect(tags(childRun)['mlflow.parentRunId']).toBe(synced[0]!.runId);
  }, 120_000);

  it('bad credentials are refused before the run starts, with no secret in the message', async () => {
    const password = 'admin-pw-5d1c';
    const secured = await MlflowServer.start({
      dir: join(root, 'auth-server'),
      adminPassword: password,
    });
    try {
      const runsDir = join(root, 'auth-runs');
      const args = [
        'train',
        base,
        '--quiet',
        `--set=tracking.dir=${runsDir}`,
        `--set=tracking.uri=${secured.uri}`,
      ];
      process.env.MLFLOW_TRACKING_USERNAME = 'admin';
      process.env.MLFLOW_TRACKING_PASSWORD = 'not-the-password-7f3a';
      const refused = await cli(args);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('CONTRAST_TRACKING');
      expect(refused.stderr).toContain('refused the credentials (HTTP 401');
      expect(refused.stderr).toContain('MLFLOW_TRACKING_PASSWORD');
      expect(refused.stderr).not.toContain('not-the-password-7f3a');
      expect(existsSync(runsDir) ? readdirSync(runsDir) : []).toEqual([]); // nothing half-written

      process.env.MLFLOW_TRACKING_PASSWORD = password;
      const accepted = await cli(args);
      expect(accepted.code, accepted.stderr).toBe(0);
      const authed = new MlflowClient(secured.uri, { auth: { username: 'admin', password } });
      const exp = await authed.getExperimentByName('mlflow-tiny');
      const runs = await authed.searchRuns([exp!.experiment_id]);
      expect(runs).toHaveLength(1);
      await expectEveryStepOnce(authed, runs[0]!.info.run_id, 10);
    } finally {
      delete process.env.MLFLOW_TRACKING_USERNAME;
      delete process.env.MLFLOW_TRACKING_PASSWORD;
      await secured.stop();
    }
  });

  it('fault: the server is killed mid-run and restarted; after the run and contrast sync nothing is missing or doubled', async () => {
    const runsDir = join(root, 'fault-runs');
    const steps = 200;
    const child = spawn(
      process.execPath,
      [
        join(repo, 'packages/cli/dist/bin.js'),
        'train',
        base,
        '--quiet',
        '--set=name=mlflow-fault',
        `--set=tracking.dir=${runsDir}`,
        `--set=tracking.uri=${server.uri}`,
        '--set=tracking.uploadWait=1',
        '--set=data.trainSubset=8192',
        '--set=optim.batchSize=64',
        '--set=optim.epochs=2',
        `--set=optim.maxSteps=${steps}`,
        '--set=model.width=1',
      ],
      {
        cwd: repo,
        env: { ...process.env, MLFLOW_TRACKING_URI: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    const exited = new Promise<number>((r) => child.on('exit', (code) => r(code ?? -1)));
    const until = async (cond: () => boolean, ms: number) => {
      const end = Date.now() + ms;
      while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    };
    const runPath = () => {
      const names = existsSync(runsDir) ? readdirSync(runsDir) : [];
      return names[0] ? join(runsDir, names[0]) : '';
    };
    const sent = () => {
      const p = runPath() && join(runPath(), 'mlflow.json');
      return p && existsSync(p)
        ? (JSON.parse(readFileSync(p, 'utf8')).metricRecordsSent as number)
        : 0;
    };
    const localLines = () => {
      const p = runPath() && join(runPath(), 'metrics.jsonl');
      return p && existsSync(p) ? readFileSync(p, 'utf8').split('\n').length - 1 : 0;
    };

    await until(() => sent() > 0, 120_000); // uploads are flowing
    expect(sent()).toBeGreaterThan(0);
    await server.stop('SIGKILL');
    const atKill = localLines();
    const sentAtKill = sent();
    await until(() => localLines() >= atKill + 20, 60_000); // training goes on while the server is down
    const whileDown = localLines() - atKill;
    await server.startProcess();
    const code = await exited;
    expect(code, stderr).toBe(0);
    expect(stderr).toContain('unreachable');

    const path = runPath();
    const beforeSync = JSON.parse(readFileSync(join(path, 'mlflow.json'), 'utf8'));
    const { code: syncCode, stdout } = await cli(['sync', path]);
    expect(syncCode).toBe(0);
    expect(stdout).toContain(`${beforeSync.runId as string} (experiment`);
    const after = JSON.parse(readFileSync(join(path, 'mlflow.json'), 'utf8'));
    const records = localRecords(path);
    expect(records.filter((r) => r.loss !== undefined)).toHaveLength(steps);
    expect(after.metricRecordsSent).toBe(records.length);
    await expectEveryStepOnce(client, after.runId, steps);
    const run = await client.getRun(after.runId);
    expect(run.info.status).toBe('FINISHED');
    // system metrics sampled while training (every 1 s here), at the training step of the moment
    const cpu = await client.getMetricHistory(after.runId, SYSTEM_METRICS.cpu);
    const during = new Set(cpu.filter((p) => p.step < steps).map((p) => p.step));
    expect(during.size).toBeGreaterThanOrEqual(3);
    console.log(
      `[fault test] ${steps} steps, ${records.length} metric records, ${after.metricPointsSent} points. ` +
        `Records uploaded before the kill: ${sentAtKill}; written while the server was down: ${whileDown}+; by the run in all: ${beforeSync.metricRecordsSent}; ` +
        `by contrast sync: ${after.metricRecordsSent - beforeSync.metricRecordsSent}. ` +
        `On the server: ${steps} points for each of ${PER_STEP.join(', ')}, steps 0..${steps - 1} once each.`,
    );
  });
});
