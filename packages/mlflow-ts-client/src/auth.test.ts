import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowClient, MlflowError } from './index.js';
import { MlflowServer } from './testing/index.js';

/** A real `mlflow server --app-name basic-auth` with user `admin`. */
describe('auth against the basic-auth server', () => {
  const password = 'admin-pw-0b5e-1c7d';
  let root: string;
  let server: MlflowServer;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'mlflow-ts-client-auth-'));
    server = await MlflowServer.start({ dir: join(root, 'server'), adminPassword: password });
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  const refusal = async (p: Promise<unknown>) => {
    const e = await p.then(
      () => undefined,
      (x: unknown) => x,
    );
    if (!(e instanceof MlflowError)) throw new Error(`expected an MlflowError, got ${String(e)}`);
    return e;
  };

  it('the right password works; a wrong one is a coded 401 with no secret in it, not retried', async () => {
    const admin = new MlflowClient(server.uri, { auth: { username: 'admin', password } });
    const id = await admin.getOrCreateExperiment('secured');
    expect((await admin.getExperiment({ experiment_id: id })).name).toBe('secured');

    const wrong = 'not-the-password-4a4a';
    const slept: number[] = [];
    const bad = new MlflowClient(server.uri, {
      auth: { username: 'admin', password: wrong },
      sleep: async (ms) => void slept.push(ms),
    });
    const e = await refusal(bad.getExperiment({ experiment_id: id }));
    expect(e).toMatchObject({ code: 'MLFLOW_UNAUTHORIZED', status: 401, retryable: false });
    expect(e.message).toBe(
      `MLflow server at ${server.uri} refused the credentials (HTTP 401 on GET /api/2.0/mlflow/experiments/get)\n` +
        '  fix: check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD',
    );
    expect(e.message).not.toContain(wrong);
    expect(e.message).not.toContain(Buffer.from(`admin:${wrong}`).toString('base64'));
    expect(slept).toEqual([]);

    const none = await refusal(
      new MlflowClient(server.uri, { auth: {} }).getOrCreateExperiment('x'),
    );
    expect(none.status).toBe(401);
  });

  it('credentials from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, or in the URI', async () => {
    const saved = { ...process.env };
    process.env.MLFLOW_TRACKING_USERNAME = 'admin';
    process.env.MLFLOW_TRACKING_PASSWORD = password;
    try {
      const fromEnv = new MlflowClient(server.uri);
      expect(await fromEnv.getOrCreateExperiment('from-env')).toMatch(/^\d+$/);
      process.env.MLFLOW_TRACKING_PASSWORD = 'wrong-env-pw-9e9e';
      const e = await refusal(new MlflowClient(server.uri).getOrCreateExperiment('from-env'));
      expect(e.status).toBe(401);
      expect(e.message).not.toContain('wrong-env-pw-9e9e');
    } finally {
      process.env.MLFLOW_TRACKING_USERNAME = saved.MLFLOW_TRACKING_USERNAME;
      process.env.MLFLOW_TRACKING_PASSWORD = saved.MLFLOW_TRACKING_PASSWORD;
      if (saved.MLFLOW_TRACKING_USERNAME === undefined) delete process.env.MLFLOW_TRACKING_USERNAME;
      if (saved.MLFLOW_TRACKING_PASSWORD === undefined) delete process.env.MLFLOW_TRACKING_PASSWORD;
    }
    const inUri = new MlflowClient(server.uri.replace('http://', `http://admin:${password}@`), {
      auth: {},
    });
    expect(inUri.base).toBe(server.uri);
    expect(await inUri.getOrCreateExperiment('from-uri')).toMatch(/^\d+$/);
  });

  it("a user without permission on an experiment: a coded 403 with the server's reason", async () => {
    const admin = new MlflowClient(server.uri, { auth: { username: 'admin', password } });
    const experiment_id = await admin.getOrCreateExperiment('admins-only');
    await admin.request({
      method: 'POST',
      path: '/api/2.0/mlflow/users/create',
      body: { username: 'reader', password: 'reader-pw-5b5b' },
    });
    const reader = new MlflowClient(server.uri, {
      auth: { username: 'reader', password: 'reader-pw-5b5b' },
    });
    expect((await reader.getExperiment({ experiment_id })).name).toBe('admins-only'); // READ by default
    const e = await refusal(reader.createRun({ experiment_id }));
    expect(e).toMatchObject({ code: 'MLFLOW_PERMISSION_DENIED', status: 403, retryable: false });
    expect(e.detail).toBe(
      `MLflow server at ${server.uri} denied POST /api/2.0/mlflow/runs/create (HTTP 403: Permission denied)`,
    );
    expect(e.message).not.toContain('reader-pw-5b5b');
  });
});
