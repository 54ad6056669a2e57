import { createServer, type IncomingMessage, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrackingError } from '@contrast/core';
import {
  artifactProxyPath,
  authFromEnv,
  chunkLogBatch,
  LOG_BATCH_LIMITS,
  MlflowClient,
  mlflowUiUrl,
  parseTrackingUri,
  type Metric,
} from './client.js';
import { fitParams, flattenParams, recordToMetrics, splitParams } from './uploader.js';
import { RUN_SETTINGS } from '@contrast/core';
import { freePort, MLFLOW_VERSION } from './server.js';

const metric = (i: number): Metric => ({
  key: `m${i % 7}`,
  value: i,
  timestamp: 1000 + i,
  step: i,
});
const kv = (p: string, i: number) => ({ key: `${p}${i}`, value: String(i) });

describe('log-batch splitting', () => {
  it('keeps every request within the server limits and loses or reorders nothing', () => {
    const batch = {
      metrics: Array.from({ length: 2500 }, (_, i) => metric(i)),
      params: Array.from({ length: 250 }, (_, i) => kv('p', i)),
      tags: Array.from({ length: 150 }, (_, i) => kv('t', i)),
    };
    const chunks = chunkLogBatch(batch);
    for (const c of chunks) {
      expect(c.metrics.length).toBeLessThanOrEqual(LOG_BATCH_LIMITS.metrics);
      expect(c.params.length).toBeLessThanOrEqual(LOG_BATCH_LIMITS.params);
      expect(c.tags.length).toBeLessThanOrEqual(LOG_BATCH_LIMITS.tags);
      expect(c.metrics.length + c.params.length + c.tags.length).toBeLessThanOrEqual(
        LOG_BATCH_LIMITS.total,
      );
    }
    expect(chunks.flatMap((c) => c.metrics)).toEqual(batch.metrics);
    expect(chunks.flatMap((c) => c.params)).toEqual(batch.params);
    expect(chunks.flatMap((c) => c.tags)).toEqual(batch.tags);
    // 100 params + 100 tags leave room for 800 metrics; then 100 + 50 for 850; then 50 + 0 for 850
    expect(chunks.map((c) => [c.params.length, c.tags.length, c.metrics.length])).toEqual([
      [100, 100, 800],
      [100, 50, 850],
      [50, 0, 850],
    ]);
  });

  it('an empty batch makes no request', () => {
    expect(chunkLogBatch({})).toEqual([]);
  });
});

describe('params and metric records', () => {
  it('flattens a nested config into dotted keys, arrays as JSON', () => {
    expect(flattenParams({ a: 1, b: { c: 'x', d: [1, 2], e: { f: true } }, g: null })).toEqual([
      { key: 'a', value: '1' },
      { key: 'b.c', value: 'x' },
      { key: 'b.d', value: '[1,2]' },
      { key: 'b.e.f', value: 'true' },
      { key: 'g', value: '' },
    ]);
  });

  it('splits a run config into hyperparameters (params) and run settings (tags)', () => {
    const config = {
      name: 'moco',
      seed: 1,
      data: { dataset: 'fashion-mnist', root: '/data/fm', trainSubset: 512, prefetch: 2 },
      optim: { lr: 0.03 },
      eval: { knn: { k: 200 } },
      checkpoint: { every: 0 },
      tracking: { dir: 'runs', uri: 'http://a:5000', uploadWait: 20 },
    };
    const { params, tags } = splitParams(config, RUN_SETTINGS);
    expect(params).toEqual([
      { key: 'seed', value: '1' },
      { key: 'data.dataset', value: 'fashion-mnist' },
      { key: 'data.trainSubset', value: '512' },
      { key: 'optim.lr', value: '0.03' },
    ]);
    expect(tags.map((t) => t.key)).toEqual([
      'name',
      'data.root',
      'data.prefetch',
      'eval.knn.k',
      'checkpoint.every',
      'tracking.dir',
      'tracking.uri',
      'tracking.uploadWait',
    ]);
    // a prefix entry covers its section only, not a field that merely starts the same
    expect(splitParams({ evaluation: 1, eval: { x: 2 } }, ['eval.']).params).toEqual([
      { key: 'evaluation', value: '1' },
    ]);
    expect(splitParams(config).tags).toEqual([]); // no settings: everything is a param
  });

  it('cuts an over-long param value to the server limit and names the key', () => {
    const { params, truncated } = fitParams([
      { key: 'short', value: 'ok' },
      { key: 'long', value: 'x'.repeat(7000) },
    ]);
    expect(truncated).toEqual(['long']);
    expect(params[0]).toEqual({ key: 'short', value: 'ok' });
    expect(params[1]!.value).toHaveLength(6000);
    expect(params[1]!.value.endsWith('...[truncated]')).toBe(true);
    expect(() => fitParams([{ key: 'k'.repeat(251), value: '' }])).toThrow(TrackingError);
  });

  it('turns a metrics.jsonl record into one point per value, timestamp in ms', () => {
    expect(recordToMetrics('{"step":3,"epoch":0,"loss":1.5,"lr":0.1,"time":12.5}')).toEqual([
      { key: 'loss', value: 1.5, timestamp: 12500, step: 3 },
      { key: 'lr', value: 0.1, timestamp: 12500, step: 3 },
    ]);
    const [nan] = recordToMetrics('{"step":0,"epoch":0,"loss":null,"time":1}');
    expect(Number.isNaN(nan!.value)).toBe(true); // JSON writes NaN as null; it goes up as "NaN"
  });
});

describe('tracking URIs and credentials', () => {
  it('moves credentials out of the URI and refuses non-HTTP schemes', () => {
    const { base, auth } = parseTrackingUri('http://alice:s%40cret@127.0.0.1:5000/');
    expect(base).toBe('http://127.0.0.1:5000');
    expect(auth).toEqual({ username: 'alice', password: 's@cret' });
    expect(() => parseTrackingUri('file:///tmp/mlruns')).toThrow(/over HTTP/);
    expect(() => parseTrackingUri('not a uri')).toThrow(/not a URL/);
  });

  it('reads the standard environment variables', () => {
    expect(
      authFromEnv({
        MLFLOW_TRACKING_USERNAME: 'u',
        MLFLOW_TRACKING_PASSWORD: 'p',
      } as NodeJS.ProcessEnv),
    ).toEqual({ username: 'u', password: 'p' });
    expect(authFromEnv({ MLFLOW_TRACKING_TOKEN: 't' } as NodeJS.ProcessEnv)).toEqual({
      token: 't',
    });
  });

  it('maps mlflow-artifacts URIs to the proxy path and refuses others', () => {
    expect(artifactProxyPath('mlflow-artifacts:/3/abc/artifacts')).toBe('3/abc/artifacts');
    expect(artifactProxyPath('mlflow-artifacts://host:5000/3/abc/artifacts')).toBe(
      '3/abc/artifacts',
    );
    expect(() => artifactProxyPath('/var/mlruns/3/abc/artifacts')).toThrow(/does not proxy/);
  });

  it("UI links choose the model-training view (MLflow 3.17's UI ignores the experiment's kind tag)", () => {
    expect(mlflowUiUrl('http://127.0.0.1:5000', '3')).toBe(
      'http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning',
    );
    expect(mlflowUiUrl('http://h:5000/mlflow', '3', 'abc')).toBe(
      'http://h:5000/mlflow/#/experiments/3/runs/abc?workflowType=machine_learning',
    );
  });

  it('the set-up script installs the MLflow version the code names', () => {
    const setup = readFileSync(join(import.meta.dirname, '../../../../scripts/setup.sh'), 'utf8');
    expect(setup).toContain(`MLFLOW_VERSION=${MLFLOW_VERSION}`);
  });
});

/**
 * Retry and refusal behaviour against a scripted HTTP server: each request
 * takes the next answer from a list. (The real server is used in the
 * integration tests; these cases cannot be produced by it on demand.)
 */
describe('client against scripted answers', () => {
  let server: Server;
  let uri: string;
  let answers: { status: number; body: unknown; headers?: Record<string, string> }[] = [];
  let seen: IncomingMessage[] = [];
  const noSleep = { sleep: async () => {}, attempts: 4 };

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req);
      req.resume();
      req.on('end', () => {
        const a = answers.shift() ?? { status: 200, body: {} };
        res.writeHead(a.status, { 'content-type': 'application/json', ...(a.headers ?? {}) });
        res.end(JSON.stringify(a.body));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const addr = server.address();
    uri = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const reset = (a: typeof answers) => {
    answers = a;
    seen = [];
  };

  it('retries 5xx and 429 (honouring Retry-After), then succeeds', async () => {
    reset([
      { status: 503, body: { error_code: 'TEMPORARILY_UNAVAILABLE' } },
      { status: 429, body: {}, headers: { 'retry-after': '0' } },
      { status: 200, body: { experiment_id: '7' } },
    ]);
    const c = new MlflowClient(uri, { ...noSleep, auth: {} });
    await expect(c.createExperiment('x')).resolves.toBe('7');
    expect(seen).toHaveLength(3);
  });

  it('gives up after its attempts with a retryable error', async () => {
    reset(Array.from({ length: 4 }, () => ({ status: 500, body: { message: 'boom' } })));
    const c = new MlflowClient(uri, { ...noSleep, auth: {} });
    const e = await c.createExperiment('x').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TrackingError);
    expect((e as TrackingError).retryable).toBe(true);
    expect((e as TrackingError).status).toBe(500);
    expect(seen).toHaveLength(4);
  });

  it('a 400 is reported once with the offending key, never retried', async () => {
    reset([
      {
        status: 400,
        body: {
          error_code: 'INVALID_PARAMETER_VALUE',
          message:
            "Changing param values is not allowed. Param with key='optim.lr' was already logged",
        },
      },
    ]);
    const c = new MlflowClient(uri, { ...noSleep, auth: {} });
    const e = (await c
      .logBatch('r1', { params: [{ key: 'optim.lr', value: '0.1' }] })
      .catch((x: unknown) => x)) as TrackingError;
    expect(e.code).toBe('CONTRAST_TRACKING');
    expect(e.mlflowCode).toBe('INVALID_PARAMETER_VALUE');
    expect(e.retryable).toBe(false);
    expect(e.message).toContain('optim.lr');
    expect(seen).toHaveLength(1);
  });

  it('bad credentials: a clear error that contains no secret', async () => {
    const secret = 'hunter2-very-secret';
    reset([
      { status: 401, body: { error_code: 'UNAUTHENTICATED', message: `bad password ${secret}` } },
    ]);
    const c = new MlflowClient(uri, { ...noSleep, auth: { username: 'alice', password: secret } });
    const e = (await c.getExperimentByName('x').catch((x: unknown) => x)) as TrackingError;
    expect(e).toBeInstanceOf(TrackingError);
    expect(e.status).toBe(401);
    expect(e.message).toMatch(/refused the credentials/);
    expect(e.message).toMatch(/MLFLOW_TRACKING_USERNAME/);
    expect(e.message).not.toContain(secret);
    expect(e.message).not.toContain(Buffer.from(`alice:${secret}`).toString('base64'));
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers.authorization).toBe(
      `Basic ${Buffer.from(`alice:${secret}`).toString('base64')}`,
    );
  });

  it('sends a bearer token when MLFLOW_TRACKING_TOKEN is given', async () => {
    reset([
      {
        status: 200,
        body: { experiment: { experiment_id: '1', name: 'x', lifecycle_stage: 'active' } },
      },
    ]);
    const c = new MlflowClient(uri, { ...noSleep, auth: { token: 'tok' } });
    await c.getExperimentByName('x');
    expect(seen[0]!.headers.authorization).toBe('Bearer tok');
  });

  it('get-or-create survives losing the create race', async () => {
    reset([
      { status: 404, body: { error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'no' } },
      { status: 400, body: { error_code: 'RESOURCE_ALREADY_EXISTS', message: 'exists' } },
      {
        status: 200,
        body: { experiment: { experiment_id: '42', name: 'x', lifecycle_stage: 'active' } },
      },
    ]);
    const c = new MlflowClient(uri, { ...noSleep, auth: {} });
    await expect(c.getOrCreateExperiment('x')).resolves.toBe('42');
    expect(seen.map((r) => `${r.method} ${r.url!.split('?')[0]}`)).toEqual([
      'GET /api/2.0/mlflow/experiments/get-by-name',
      'POST /api/2.0/mlflow/experiments/create',
      'GET /api/2.0/mlflow/experiments/get-by-name',
    ]);
  });

  it('an unreachable server is a retryable error naming the server', async () => {
    const port = await freePort();
    const c = new MlflowClient(`http://127.0.0.1:${port}`, { ...noSleep, attempts: 2, auth: {} });
    const e = (await c.getRun('x').catch((x: unknown) => x)) as TrackingError;
    expect(e).toBeInstanceOf(TrackingError);
    expect(e.retryable).toBe(true);
    expect(e.message).toContain(`127.0.0.1:${port} unreachable`);
  });
});
