import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MlflowClient, MlflowError, retryAfterMs } from './index.js';
import { freePort } from './testing/index.js';

/**
 * What a real MLflow server cannot be made to do on demand: answer 429 with
 * Retry-After, fail with 503 once, reset a connection, hang, echo a
 * credential. Each request takes the next scripted behaviour from `script`.
 */
type Step = (req: IncomingMessage, res: ServerResponse, body: string) => void;
const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): Step =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
const reset: Step = (req) => req.socket.destroy();
const hang: Step = () => {};

describe('HTTP behaviour against a scripted server', () => {
  let server: Server;
  let uri: string;
  let script: Step[] = [];
  let seen: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[];
  let slept: number[];
  const fast = () => ({
    auth: {},
    attempts: 4,
    sleep: async (ms: number) => void slept.push(ms),
  });

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
        (script.shift() ?? json(200, {}))(req, res, body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const addr = server.address();
    uri = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  beforeEach(() => {
    script = [];
    seen = [];
    slept = [];
  });

  it('429 with Retry-After in seconds: waits exactly that long, then succeeds', async () => {
    script = [json(429, { error_code: 'REQUEST_LIMIT_EXCEEDED' }, { 'retry-after': '3' })];
    script.push(json(200, { experiment_id: '12' }));
    const c = new MlflowClient(uri, fast());
    await expect(c.createExperiment({ name: 'x' })).resolves.toBe('12');
    expect(slept).toEqual([3000]);
    expect(seen.map((s) => s.body)).toEqual(['{"name":"x"}', '{"name":"x"}']);
  });

  it('Retry-After as an HTTP date, and one longer than maxRetryAfterMs is cut to it', async () => {
    const date = new Date(Date.now() + 120_000).toUTCString();
    script = [json(429, {}, { 'retry-after': date }), json(200, { experiment_id: '1' })];
    const c = new MlflowClient(uri, { ...fast(), maxRetryAfterMs: 5000 });
    await c.createExperiment({ name: 'x' });
    expect(slept).toEqual([5000]);
    const inTen = retryAfterMs(new Date(Date.now() + 10_000).toUTCString());
    expect(inTen).toBeGreaterThan(8000); // HTTP dates have whole seconds
    expect(inTen).toBeLessThanOrEqual(10_000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs('')).toBeUndefined();
  });

  it('503 then success: one retry after the first backoff step (500 ms +-25%)', async () => {
    script = [json(503, { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'busy' })];
    script.push(json(200, { run: { info: { run_id: 'r' }, data: {} } }));
    const c = new MlflowClient(uri, fast());
    const run = await c.getRun({ run_id: 'r' });
    expect(run.info.run_id).toBe('r');
    expect(seen).toHaveLength(2);
    expect(slept).toHaveLength(1);
    expect(slept[0]).toBeGreaterThanOrEqual(375);
    expect(slept[0]).toBeLessThanOrEqual(625);
  });

  it('backoff doubles per attempt up to maxBackoffMs; the last error is retryable and coded', async () => {
    script = Array.from({ length: 5 }, () => json(500, { message: 'boom' }));
    const c = new MlflowClient(uri, { ...fast(), attempts: 5, backoffMs: 100, maxBackoffMs: 300 });
    const e = (await c.getRun({ run_id: 'r' }).catch((x: unknown) => x)) as MlflowError;
    expect(e).toBeInstanceOf(MlflowError);
    expect(e.code).toBe('MLFLOW_HTTP_ERROR');
    expect(e.status).toBe(500);
    expect(e.retryable).toBe(true);
    expect(e.message).toBe('MLflow GET /api/2.0/mlflow/runs/get failed: HTTP 500: boom');
    expect(seen).toHaveLength(5);
    const nominal = [100, 200, 300, 300];
    slept.forEach((ms, i) => {
      expect(ms).toBeGreaterThanOrEqual(nominal[i]! * 0.75);
      expect(ms).toBeLessThanOrEqual(nominal[i]! * 1.25);
    });
  });

  it('a reset connection is retried; a 4xx answer is not', async () => {
    script = [reset, json(200, { experiment_id: '5' })];
    const c = new MlflowClient(uri, fast());
    await expect(c.createExperiment({ name: 'x' })).resolves.toBe('5');
    expect(seen).toHaveLength(2);

    seen = [];
    script = [json(400, { error_code: 'INVALID_PARAMETER_VALUE', message: 'no' })];
    const e = (await c.createExperiment({ name: 'x' }).catch((x: unknown) => x)) as MlflowError;
    expect(e.errorCode).toBe('INVALID_PARAMETER_VALUE');
    expect(e.retryable).toBe(false);
    expect(seen).toHaveLength(1);
  });

  it('a server that never answers times out per attempt, as a retryable error', async () => {
    script = [hang, hang];
    const c = new MlflowClient(uri, { ...fast(), attempts: 2, timeoutMs: 200 });
    const e = (await c.getRun({ run_id: 'r' }).catch((x: unknown) => x)) as MlflowError;
    expect(e.code).toBe('MLFLOW_UNREACHABLE');
    expect(e.retryable).toBe(true);
    expect(e.message).toContain('TimeoutError');
    expect(seen).toHaveLength(2);
  });

  it('nobody listening: MLFLOW_UNREACHABLE naming the server and the call', async () => {
    const port = await freePort();
    const c = new MlflowClient(`http://127.0.0.1:${port}`, { ...fast(), attempts: 3 });
    const e = (await c
      .searchRuns({ experiment_ids: ['0'] })
      .catch((x: unknown) => x)) as MlflowError;
    expect(e.code).toBe('MLFLOW_UNREACHABLE');
    expect(e.detail).toBe(
      `MLflow server at http://127.0.0.1:${port} unreachable (POST /api/2.0/mlflow/runs/search: ECONNREFUSED: nothing listens on 127.0.0.1:${port})`,
    );
    expect(e.hint).toBe(
      `start the server (mlflow server --host 127.0.0.1 --port ${port} ...), or correct the address`,
    );
    expect(slept).toHaveLength(2);
  });

  it("a port fetch blocks (6000, X11's) is named as such with the fix, not as a bare TypeError", async () => {
    const c = new MlflowClient('http://127.0.0.1:6000', { ...fast(), attempts: 1 });
    const e = (await c.getRun({ run_id: 'r' }).catch((x: unknown) => x)) as MlflowError;
    expect(e.code).toBe('MLFLOW_UNREACHABLE');
    expect(e.detail).toBe(
      'MLflow server at http://127.0.0.1:6000 unreachable (GET /api/2.0/mlflow/runs/get: port 6000 is one the Fetch standard blocks (fetch refuses it: "bad port"))',
    );
    expect(e.hint).toBe('serve MLflow on another port (e.g. 5000) and use that address');
  });

  it('a 2xx answer that is not JSON is MLFLOW_BAD_RESPONSE, not a crash', async () => {
    script = [
      (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('a proxy says hello');
      },
    ];
    const c = new MlflowClient(uri, fast());
    const e = (await c.getRun({ run_id: 'r' }).catch((x: unknown) => x)) as MlflowError;
    expect(e.code).toBe('MLFLOW_BAD_RESPONSE');
    expect(e.message).toContain('a proxy says hello');
  });

  it('an HTML page instead of JSON (200 or 404): not an MLflow server, coded, not retried; a 502 page is retried', async () => {
    const html =
      (status: number): Step =>
      (_req, res) => {
        res.writeHead(status, { 'content-type': 'text/html' });
        res.end(
          '<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body></body></html>',
        );
      };
    const c = new MlflowClient(uri, fast());
    for (const status of [200, 404]) {
      script = [html(status)];
      seen = [];
      const e = (await c.getOrCreateExperiment('x').catch((x: unknown) => x)) as MlflowError;
      expect(e).toBeInstanceOf(MlflowError);
      expect(e.code).toBe('MLFLOW_NOT_MLFLOW_SERVER');
      expect(e.retryable).toBe(false);
      expect(e.status).toBe(status);
      expect(e.detail).toBe(
        `${uri} is not an MLflow tracking server: GET /api/2.0/mlflow/experiments/get-by-name answered HTTP ${status} with an HTML page ('Welcome to nginx!') instead of MLflow's JSON`,
      );
      expect(e.hint).toContain('mlflow server');
      expect(e.message).not.toContain('<html');
      expect(seen).toHaveLength(1);
    }
    script = [
      html(502),
      json(200, { experiment: { experiment_id: '4', name: 'x', lifecycle_stage: 'active' } }),
    ];
    await expect(c.getOrCreateExperiment('x')).resolves.toBe('4');
  });
});

describe('credentials never reach a message', () => {
  let server: Server;
  let uri: string;
  let seen: IncomingMessage['headers'][] = [];

  beforeAll(async () => {
    // answers every request by echoing the Authorization header back in its error message
    server = createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => {
        const echo = `${req.headers.authorization ?? ''} ${Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString()}`;
        const status = req.url!.includes('/runs/get') ? 401 : 400;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error_code: 'BAD_REQUEST', message: `you sent ${echo}` }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const addr = server.address();
    uri = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => {
    seen = [];
  });

  const refusal = (c: MlflowClient) =>
    c.createExperiment({ name: 'x' }).catch((x: unknown) => x) as Promise<MlflowError>;

  it('basic auth: neither the password nor the encoded header appears', async () => {
    const password = 'pw-that-must-not-leak-91c';
    const basic = Buffer.from(`alice:${password}`).toString('base64');
    const c = new MlflowClient(uri, { auth: { username: 'alice', password }, attempts: 1 });
    const e = await refusal(c);
    expect(seen[0]!.authorization).toBe(`Basic ${basic}`);
    expect(e.message).toContain('you sent Basic *** alice:***'); // the echo arrived, redacted
    expect(e.message).not.toContain(password);
    expect(e.message).not.toContain(basic);
    expect(c.redact(`x ${password} y ${basic}`)).toBe('x *** y ***');
  });

  it('a bearer token from MLFLOW_TRACKING_TOKEN is sent and redacted', async () => {
    const token = 'tok-3f9e-secret';
    const saved = process.env.MLFLOW_TRACKING_TOKEN;
    process.env.MLFLOW_TRACKING_TOKEN = token;
    try {
      const c = new MlflowClient(uri, { attempts: 1 });
      const e = await refusal(c);
      expect(seen[0]!.authorization).toBe(`Bearer ${token}`);
      expect(e.message).toContain('you sent Bearer ***');
      expect(e.message).not.toContain(token);
    } finally {
      if (saved === undefined) delete process.env.MLFLOW_TRACKING_TOKEN;
      else process.env.MLFLOW_TRACKING_TOKEN = saved;
    }
  });

  it('credentials written into the URI become basic auth and leave the shown URL', async () => {
    const password = 'uri-pw-77aa';
    const c = new MlflowClient(uri.replace('http://', `http://bob:${password}@`), {
      attempts: 1,
    });
    expect(c.base).toBe(uri);
    const e = (await c.getRun({ run_id: 'r' }).catch((x: unknown) => x)) as MlflowError;
    expect(seen[0]!.authorization).toBe(
      `Basic ${Buffer.from(`bob:${password}`).toString('base64')}`,
    );
    expect(e.code).toBe('MLFLOW_UNAUTHORIZED');
    expect(e.status).toBe(401);
    expect(e.message).toContain('MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD');
    expect(e.message).not.toContain(password);
  });
});
