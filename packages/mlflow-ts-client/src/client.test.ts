import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MlflowClient, MlflowError, type Metric } from './index.js';
import { MlflowServer } from './testing/index.js';

/** Every call below goes to a real `mlflow server` (sqlite store, proxied artifacts). */
let root: string;
let server: MlflowServer;
let mlflow: MlflowClient;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'mlflow-ts-client-'));
  server = await MlflowServer.start({ dir: join(root, 'server') });
  mlflow = new MlflowClient(server.uri, { auth: {} });
}, 180_000);

afterAll(async () => {
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** The error a call rejects with. */
async function refusal(p: Promise<unknown>): Promise<MlflowError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  if (!(e instanceof MlflowError)) throw new Error(`expected an MlflowError, got ${String(e)}`);
  return e;
}

async function newRun(name: string) {
  const experiment_id = await mlflow.getOrCreateExperiment(`exp-${name}`);
  return (await mlflow.createRun({ experiment_id, run_name: name })).info;
}

describe('experiments', () => {
  it('create, get by id and by name, get-or-create twice gives one experiment', async () => {
    const id = await mlflow.createExperiment({ name: 'alpha', tags: [{ key: 'k', value: 'v' }] });
    const byId = await mlflow.getExperiment({ experiment_id: id });
    expect(byId).toMatchObject({ experiment_id: id, name: 'alpha', lifecycle_stage: 'active' });
    expect(byId.tags).toContainEqual({ key: 'k', value: 'v' });
    expect((await mlflow.getExperimentByName({ experiment_name: 'alpha' }))?.experiment_id).toBe(
      id,
    );
    expect(await mlflow.getExperimentByName({ experiment_name: 'no-such-name' })).toBeUndefined();
    expect(await mlflow.getOrCreateExperiment('alpha')).toBe(id);
    const beta = await mlflow.getOrCreateExperiment('beta');
    expect(await mlflow.getOrCreateExperiment('beta')).toBe(beta);
  });

  it("the server's error codes: RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST", async () => {
    const dup = await refusal(mlflow.createExperiment({ name: 'alpha' }));
    expect(dup).toMatchObject({
      code: 'MLFLOW_HTTP_ERROR',
      status: 400,
      errorCode: 'RESOURCE_ALREADY_EXISTS',
      retryable: false,
    });
    const missing = await refusal(mlflow.getExperiment({ experiment_id: '987654' }));
    expect(missing).toMatchObject({ status: 404, errorCode: 'RESOURCE_DOES_NOT_EXIST' });
    expect(missing.message).toBe(
      'MLflow GET /api/2.0/mlflow/experiments/get failed: HTTP 404 RESOURCE_DOES_NOT_EXIST: No Experiment with id=987654 exists',
    );
  });

  it('search follows every page; delete and restore; get-or-create refuses a deleted name', async () => {
    for (const n of ['s1', 's2', 's3', 's4', 's5']) await mlflow.createExperiment({ name: n });
    const page = await mlflow.searchExperiments({ max_results: 2, filter: "name LIKE 's%'" });
    expect(page.experiments).toHaveLength(2);
    expect(page.next_page_token).toBeTruthy();
    const all = await mlflow.searchAllExperiments({ max_results: 2, filter: "name LIKE 's%'" });
    expect(all.map((e) => e.name).sort()).toEqual(['s1', 's2', 's3', 's4', 's5']);

    const s3 = all.find((e) => e.name === 's3')!.experiment_id;
    await mlflow.deleteExperiment({ experiment_id: s3 });
    const deleted = await refusal(mlflow.getOrCreateExperiment('s3'));
    expect(deleted.code).toBe('MLFLOW_EXPERIMENT_DELETED');
    expect(deleted.hint).toContain(`restoreExperiment({ experiment_id: '${s3}' })`);
    const run = await refusal(mlflow.createRun({ experiment_id: s3 }));
    expect(run.errorCode).toBe('INVALID_PARAMETER_VALUE');
    expect(
      (await mlflow.searchAllExperiments({ view_type: 'DELETED_ONLY' })).map((e) => e.name),
    ).toEqual(['s3']);
    await mlflow.restoreExperiment({ experiment_id: s3 });
    expect(await mlflow.getOrCreateExperiment('s3')).toBe(s3);
  });
});

describe('runs', () => {
  it('create, update, get; setTerminated records the status and end time', async () => {
    const experiment_id = await mlflow.getOrCreateExperiment('runs');
    const run = await mlflow.createRun({
      experiment_id,
      run_name: 'r',
      start_time: 1_000,
      tags: [{ key: 'mlflow.source.name', value: 'train.ts' }],
    });
    expect(run.info).toMatchObject({
      experiment_id,
      run_name: 'r',
      status: 'RUNNING',
      start_time: 1_000,
    });
    expect(run.info.artifact_uri).toBe(
      `mlflow-artifacts:/${experiment_id}/${run.info.run_id}/artifacts`,
    );
    const renamed = await mlflow.updateRun({ run_id: run.info.run_id, run_name: 'r2' });
    expect(renamed.run_name).toBe('r2');
    const ended = await mlflow.setTerminated(run.info.run_id, 'KILLED', 5_000);
    expect(ended).toMatchObject({ status: 'KILLED', end_time: 5_000 });
    const got = await mlflow.getRun({ run_id: run.info.run_id });
    expect(got.info).toMatchObject({ status: 'KILLED', end_time: 5_000, run_name: 'r2' });
    expect(got.data.tags).toContainEqual({ key: 'mlflow.source.name', value: 'train.ts' });
    const missing = await refusal(mlflow.getRun({ run_id: '0'.repeat(32) }));
    expect(missing).toMatchObject({ status: 404, errorCode: 'RESOURCE_DOES_NOT_EXIST' });
  });

  it('search follows every page and applies the filter; delete and restore', async () => {
    const experiment_id = await mlflow.getOrCreateExperiment('paged');
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const tags = [{ key: 'parity', value: i % 2 ? 'odd' : 'even' }];
      ids.push((await mlflow.createRun({ experiment_id, run_name: `p${i}`, tags })).info.run_id);
    }
    const first = await mlflow.searchRuns({ experiment_ids: [experiment_id], max_results: 3 });
    expect(first.runs).toHaveLength(3);
    const all = await mlflow.searchAllRuns({ experiment_ids: [experiment_id], max_results: 3 });
    expect(all.map((r) => r.info.run_id).sort()).toEqual([...ids].sort());
    const odd = await mlflow.searchAllRuns({
      experiment_ids: [experiment_id],
      filter: "tags.parity = 'odd'",
      order_by: ['attributes.run_name ASC'],
      max_results: 2,
    });
    expect(odd.map((r) => r.info.run_name)).toEqual(['p1', 'p3', 'p5']);

    await mlflow.deleteRun({ run_id: ids[0]! });
    expect(await mlflow.searchAllRuns({ experiment_ids: [experiment_id] })).toHaveLength(6);
    const deleted = await mlflow.searchAllRuns({
      experiment_ids: [experiment_id],
      run_view_type: 'DELETED_ONLY',
    });
    expect(deleted.map((r) => r.info.run_id)).toEqual([ids[0]]);
    await mlflow.restoreRun({ run_id: ids[0]! });
    expect(await mlflow.searchAllRuns({ experiment_ids: [experiment_id] })).toHaveLength(7);
  });
});

describe('params, metrics and tags at the server limits', () => {
  it('2500 metrics, 250 params and 150 tags in one call all arrive (split into requests)', async () => {
    const { run_id } = await newRun('big-batch');
    const metrics: Metric[] = Array.from({ length: 2500 }, (_, step) => ({
      key: 'loss',
      value: 2500 - step,
      timestamp: 1_700_000_000_000 + step,
      step,
    }));
    const params = Array.from({ length: 250 }, (_, i) => ({ key: `p${i}`, value: `v${i}` }));
    const tags = Array.from({ length: 150 }, (_, i) => ({ key: `t${i}`, value: `w${i}` }));
    await mlflow.logBatch({ run_id, metrics, params, tags });

    const run = await mlflow.getRun({ run_id });
    expect(run.data.params).toHaveLength(250);
    expect(run.data.tags?.filter((t) => t.key.startsWith('t'))).toHaveLength(150);
    expect(run.data.metrics).toEqual([
      expect.objectContaining({ key: 'loss', value: 1, step: 2499 }), // the latest point
    ]);
    // history in pages of 1000: three requests, every point once
    const history = await mlflow.getMetricHistory({
      run_id,
      metric_key: 'loss',
      max_results: 1000,
    });
    expect(history.map((m) => m.step).sort((a, b) => a - b)).toEqual(metrics.map((m) => m.step));
    expect(history.find((m) => m.step === 7)).toMatchObject({
      value: 2493,
      timestamp: metrics[7]!.timestamp,
    });
  });

  it('the server itself refuses a request over its limits (why logBatch splits)', async () => {
    const { run_id } = await newRun('raw-limits');
    const post = (body: object) =>
      refusal(
        mlflow.request({
          method: 'POST',
          path: '/api/2.0/mlflow/runs/log-batch',
          body: { run_id, ...body },
        }),
      );
    const params = await post({
      params: Array.from({ length: 101 }, (_, i) => ({ key: `p${i}`, value: 'x' })),
    });
    expect(params.errorCode).toBe('INVALID_PARAMETER_VALUE');
    expect(params.message).toContain('at most 100 params');
    const metrics = await post({
      metrics: Array.from({ length: 1001 }, (_, step) => ({
        key: 'm',
        value: 1,
        timestamp: 0,
        step,
      })),
    });
    expect(metrics.message).toContain('at most 1000 metrics');
  });

  it('a param value over 6000 characters is refused naming the key, and nothing of the batch is sent', async () => {
    const { run_id } = await newRun('long-param');
    const e = await refusal(
      mlflow.logBatch({
        run_id,
        params: [
          { key: 'ok', value: 'fine' },
          { key: 'model.description', value: 'd'.repeat(6001) },
        ],
        metrics: [{ key: 'm', value: 1, timestamp: 0, step: 0 }],
      }),
    );
    expect(e).toMatchObject({ code: 'MLFLOW_INVALID_INPUT', errorCode: 'INVALID_PARAMETER_VALUE' });
    expect(e.message).toContain("param 'model.description'");
    const run = await mlflow.getRun({ run_id });
    expect(run.data.params ?? []).toEqual([]);
    expect(run.data.metrics ?? []).toEqual([]);
    // exactly at the limit: stored in full
    await mlflow.logParam({ run_id, key: 'model.description', value: 'd'.repeat(6000) });
    const stored = (await mlflow.getRun({ run_id })).data.params?.[0];
    expect(stored?.value).toHaveLength(6000);
  });

  it('re-logging a param with another value: INVALID_PARAMETER_VALUE from the server, naming the key', async () => {
    const { run_id } = await newRun('param-change');
    await mlflow.logBatch({ run_id, params: [{ key: 'optim.lr', value: '0.1' }] });
    await mlflow.logBatch({ run_id, params: [{ key: 'optim.lr', value: '0.1' }] }); // same value: fine
    const e = await refusal(
      mlflow.logBatch({ run_id, params: [{ key: 'optim.lr', value: '0.5' }] }),
    );
    expect(e).toMatchObject({
      code: 'MLFLOW_HTTP_ERROR',
      status: 400,
      errorCode: 'INVALID_PARAMETER_VALUE',
    });
    expect(e.message).toContain("'key': 'optim.lr'");
  });

  it('NaN and infinities round-trip as numbers; logMetric and setTag', async () => {
    const { run_id } = await newRun('non-finite');
    await mlflow.logBatch({
      run_id,
      metrics: [
        { key: 'x', value: Number.NaN, timestamp: 1, step: 0 },
        { key: 'x', value: Number.POSITIVE_INFINITY, timestamp: 2, step: 1 },
        { key: 'x', value: Number.NEGATIVE_INFINITY, timestamp: 3, step: 2 },
      ],
    });
    await mlflow.logMetric({ run_id, key: 'x', value: 0.25, timestamp: 4, step: 3 });
    const values = (await mlflow.getMetricHistory({ run_id, metric_key: 'x' }))
      .sort((a, b) => a.step - b.step)
      .map((m) => m.value);
    expect(Number.isNaN(values[0])).toBe(true);
    expect(values.slice(1)).toEqual([Number.MAX_VALUE, -Number.MAX_VALUE, 0.25]); // the server's infinities
    await mlflow.setTag({ run_id, key: 'stage', value: 'a' });
    await mlflow.setTag({ run_id, key: 'stage', value: 'b' });
    expect((await mlflow.getRun({ run_id })).data.tags).toContainEqual({
      key: 'stage',
      value: 'b',
    });
  });
});

describe('dataset inputs', () => {
  it('log-inputs records the dataset with its context tag', async () => {
    const { run_id } = await newRun('inputs');
    const dataset = {
      name: 'fashion-mnist',
      digest: '0123456789abcdef',
      source_type: 'local',
      source: '{"split":"train"}',
    };
    await mlflow.logInputs({
      run_id,
      datasets: [{ tags: [{ key: 'mlflow.data.context', value: 'train' }], dataset }],
    });
    const inputs = (await mlflow.getRun({ run_id })).inputs?.dataset_inputs;
    expect(inputs).toHaveLength(1);
    expect(inputs![0]!.dataset).toMatchObject(dataset);
    expect(inputs![0]!.tags).toEqual([{ key: 'mlflow.data.context', value: 'train' }]);
  });
});

describe('artifacts through the mlflow-artifacts proxy', () => {
  it('upload, list and download: the bytes come back equal', async () => {
    const { artifact_uri } = await newRun('artifacts');
    const blob = new Uint8Array(randomBytes(3 * 1024 * 1024 + 17));
    await mlflow.uploadArtifact({ artifact_uri, path: 'checkpoints/final.bin', data: blob });
    await mlflow.uploadArtifact({ artifact_uri, path: 'config.yaml', data: 'lr: 0.1\n' });
    await mlflow.uploadArtifact({
      artifact_uri,
      path: 'plots/k vs acc (100%).svg',
      data: '<svg/>',
    });

    const top = await mlflow.listArtifacts({ artifact_uri });
    expect(top.map((f) => [f.path, f.is_dir]).sort()).toEqual([
      ['checkpoints', true],
      ['config.yaml', false],
      ['plots', true],
    ]);
    expect(await mlflow.listArtifacts({ artifact_uri, path: 'checkpoints' })).toEqual([
      { path: 'final.bin', is_dir: false, file_size: blob.length },
    ]);
    const back = await mlflow.downloadArtifact({ artifact_uri, path: 'checkpoints/final.bin' });
    expect(Buffer.from(back).equals(Buffer.from(blob))).toBe(true);
    const svg = await mlflow.downloadArtifact({ artifact_uri, path: 'plots/k vs acc (100%).svg' });
    expect(Buffer.from(svg).toString()).toBe('<svg/>');

    await mlflow.uploadArtifact({ artifact_uri, path: 'config.yaml', data: 'lr: 0.2\n' }); // PUT overwrites
    const yaml = await mlflow.downloadArtifact({ artifact_uri, path: 'config.yaml' });
    expect(Buffer.from(yaml).toString()).toBe('lr: 0.2\n');
  });

  it('a missing file is a coded 404; unsafe paths and URIs the server does not proxy are refused', async () => {
    const { artifact_uri } = await newRun('artifacts-missing');
    const hash = await refusal(mlflow.uploadArtifact({ artifact_uri, path: 'a#b.txt', data: 'x' }));
    expect(hash).toMatchObject({ status: 400, errorCode: 'INVALID_PARAMETER_VALUE' });
    expect(hash.message).toContain('Invalid path'); // the server's own path check
    // '..' would be resolved by the URL before the server could check it: refused here
    const up = await refusal(
      mlflow.uploadArtifact({ artifact_uri, path: '../../x.txt', data: 'x' }),
    );
    expect(up).toMatchObject({ code: 'MLFLOW_INVALID_INPUT', status: undefined });
    expect(await mlflow.listArtifacts({ artifact_uri })).toEqual([]);
    const e = await refusal(mlflow.downloadArtifact({ artifact_uri, path: 'nope.bin' }));
    expect(e).toMatchObject({ code: 'MLFLOW_HTTP_ERROR', status: 404, retryable: false });
    const s3 = await refusal(mlflow.listArtifacts({ artifact_uri: 's3://bucket/1/r/artifacts' }));
    expect(s3.code).toBe('MLFLOW_NOT_PROXIED');
  });
});

describe('MLflow 3 logged models', () => {
  it('create, upload its files, finalize, link to the run; visible via get, search and the run', async () => {
    const run = await newRun('models');
    const created = await mlflow.createLoggedModel({
      experiment_id: run.experiment_id,
      name: 'encoder',
      model_type: 'resnet18',
      source_run_id: run.run_id,
      params: [{ key: 'dim', value: '128' }],
      tags: [{ key: 'stage', value: 'pretrain' }],
    });
    const { model_id, artifact_uri } = created.info;
    expect(created.info).toMatchObject({
      name: 'encoder',
      status: 'LOGGED_MODEL_PENDING',
      source_run_id: run.run_id,
    });
    expect(artifact_uri).toBe(
      `mlflow-artifacts:/${run.experiment_id}/models/${model_id}/artifacts`,
    );

    const weights = new Uint8Array(randomBytes(4096));
    await mlflow.uploadArtifact({ artifact_uri, path: 'weights.bin', data: weights });
    const ready = await mlflow.finalizeLoggedModel({ model_id, status: 'LOGGED_MODEL_READY' });
    expect(ready.info.status).toBe('LOGGED_MODEL_READY');
    await mlflow.logOutputs({ run_id: run.run_id, models: [{ model_id, step: 42 }] });
    await mlflow.logMetric({
      run_id: run.run_id,
      key: 'knn',
      value: 0.8,
      timestamp: 1,
      step: 42,
      model_id,
    });
    await mlflow.setLoggedModelTags({ model_id, tags: [{ key: 'stage', value: 'final' }] });
    await mlflow.logLoggedModelParams({ model_id, params: [{ key: 'epochs', value: '200' }] });

    const got = await mlflow.getLoggedModel({ model_id });
    expect(got.info.tags).toContainEqual({ key: 'stage', value: 'final' });
    expect(got.data?.params).toEqual(
      expect.arrayContaining([
        { key: 'dim', value: '128' },
        { key: 'epochs', value: '200' },
      ]),
    );
    expect(got.data?.metrics).toEqual([
      expect.objectContaining({ key: 'knn', value: 0.8, model_id }),
    ]);
    expect((await mlflow.getRun({ run_id: run.run_id })).outputs?.model_outputs).toEqual([
      { model_id, step: 42 },
    ]);
    const found = await mlflow.searchAllLoggedModels({
      experiment_ids: [run.experiment_id],
      filter: "name = 'encoder'",
    });
    expect(found.map((m) => m.info.model_id)).toEqual([model_id]);
    const files = await mlflow.listLoggedModelArtifacts({ model_id });
    expect(files.files).toEqual([{ path: 'weights.bin', is_dir: false, file_size: 4096 }]);
    const back = await mlflow.downloadArtifact({ artifact_uri, path: 'weights.bin' });
    expect(Buffer.from(back).equals(Buffer.from(weights))).toBe(true);

    await mlflow.deleteLoggedModel({ model_id });
    const gone = await refusal(mlflow.getLoggedModel({ model_id }));
    expect(gone).toMatchObject({ status: 404, errorCode: 'RESOURCE_DOES_NOT_EXIST' });
  });

  it('logModel does it in one call and marks a model whose upload fails UPLOAD_FAILED', async () => {
    const run = await newRun('log-model');
    const model = await mlflow.logModel({
      experiment_id: run.experiment_id,
      name: 'probe',
      source_run_id: run.run_id,
      step: 3,
      files: [
        { path: 'MLmodel', data: 'artifact_path: probe\n' },
        { path: 'data/weights.bin', data: new Uint8Array([9, 8, 7]) },
      ],
    });
    expect(model.info.status).toBe('LOGGED_MODEL_READY');
    expect((await mlflow.getRun({ run_id: run.run_id })).outputs?.model_outputs).toEqual([
      { model_id: model.info.model_id, step: 3 },
    ]);
    const data = await mlflow.listArtifacts({
      artifact_uri: model.info.artifact_uri,
      path: 'data',
    });
    expect(data).toEqual([{ path: 'weights.bin', is_dir: false, file_size: 3 }]);

    // a file name longer than the file system allows: the server fails the upload (HTTP 500)
    const once = new MlflowClient(server.uri, { auth: {}, attempts: 1 });
    const e = await refusal(
      once.logModel({
        experiment_id: run.experiment_id,
        name: 'broken',
        files: [{ path: 'x'.repeat(300), data: 'x' }],
      }),
    );
    expect(e).toMatchObject({ status: 500, retryable: true });
    const [broken] = await mlflow.searchAllLoggedModels({
      experiment_ids: [run.experiment_id],
      filter: "name = 'broken'",
    });
    expect(broken?.info.status).toBe('LOGGED_MODEL_UPLOAD_FAILED');
  });
});

describe('README', () => {
  it('the quick example runs as written against the server', async () => {
    const readme = readFileSync(join(import.meta.dirname, '../README.md'), 'utf8');
    const code = /## Quick example\s+```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(code).toContain("from 'mlflow-ts-client'");
    const file = join(root, 'readme-example.ts');
    writeFileSync(file, code!);
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    const saved = process.env.MLFLOW_TRACKING_URI;
    process.env.MLFLOW_TRACKING_URI = server.uri;
    let printed: unknown[][];
    try {
      await import(file);
    } finally {
      printed = [...log.mock.calls];
      log.mockRestore();
      if (saved === undefined) delete process.env.MLFLOW_TRACKING_URI;
      else process.env.MLFLOW_TRACKING_URI = saved;
    }
    expect(printed).toEqual([['2500 loss points; model encoder is LOGGED_MODEL_READY']]);
    // and the server holds what the example says it logged
    const exp = await mlflow.getExperimentByName({ experiment_name: 'quickstart' });
    const [run] = await mlflow.searchAllRuns({ experiment_ids: [exp!.experiment_id] });
    expect(run!.info).toMatchObject({ run_name: 'hello', status: 'FINISHED' });
    expect(run!.data.params).toEqual([{ key: 'lr', value: '0.1' }]);
    expect(run!.outputs?.model_outputs).toHaveLength(1);
    const note = await mlflow.downloadArtifact({
      artifact_uri: run!.info.artifact_uri,
      path: 'notes/hello.txt',
    });
    expect(Buffer.from(note).toString()).toBe('hello, MLflow');
  });
});
