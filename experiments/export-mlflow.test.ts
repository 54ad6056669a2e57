import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadExperiment } from '@contrast/core';
import { builtinPlugins } from '@contrast/cli';
import { exportRun } from '@contrast/export';
import { createCatalog, runExperiment } from '@contrast/trainer';
import type { MlflowClient, MlflowServer } from '@contrast/tracking';
import { mlflowFixture } from './fixtures.js';

/** `contrast export` of a tracked run, against a real MLflow server. */
const BASE = `name: export-mlflow
data: { trainSubset: 512 }
model: { encoder: convnet, width: 0.25, dim: 16 }
strategy: { name: momentum-queue, queueSize: 64 }
optim: { batchSize: 64, epochs: 1, maxSteps: 4 }
eval: { knn: { every: 0, testSize: 200, bankSize: 512 }, baselines: false, alignUniform: 0, health: 0 }
`;

describe('an exported encoder in MLflow', () => {
  let root: string;
  let base: string;
  let server: MlflowServer;
  let client: MlflowClient;

  beforeAll(async () => {
    ({ root, base, server, client } = await mlflowFixture('contrast-export-mlflow-', BASE));
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
  });

  it('is a logged model linked to its run: READY, its files as artifacts, the run’s output', async () => {
    const config = loadExperiment(base, [
      `tracking.dir=${join(root, 'runs')}`,
      `tracking.uri=${server.uri}`,
    ]);
    const catalog = createCatalog(builtinPlugins());
    const { runPath } = await runExperiment(config, catalog, { progress: false, log: () => {} });
    const { runId } = JSON.parse(readFileSync(join(runPath, 'mlflow.json'), 'utf8')) as {
      runId: string;
    };
    const lines: string[] = [];
    const r = await exportRun(runPath, catalog, {
      formats: ['tfjs', 'npz'],
      log: (l) => lines.push(l),
    });
    expect(r.mlflowModel, lines.join('\n')).toMatchObject({ runId });

    const model = await client.rest.getLoggedModel({ model_id: r.mlflowModel!.modelId });
    expect(model.info).toMatchObject({
      name: 'encoder',
      source_run_id: runId,
      status: 'LOGGED_MODEL_READY',
    });
    const params = Object.fromEntries((model.data?.params ?? []).map((p) => [p.key, p.value]));
    expect(params).toMatchObject({ encoder: 'convnet', input: '28x28x1' });
    const files = await client.rest.listLoggedModelArtifacts({ model_id: model.info.model_id });
    expect((files.files ?? []).map((f) => f.path).sort()).toEqual(
      ['encoder.json', 'encoder.npz', 'tfjs'].sort(),
    );
    const run = await client.getRun(runId);
    expect(run.outputs?.model_outputs?.map((o) => o.model_id)).toContain(model.info.model_id);
  }, 180_000);

  it('an untracked run exports without a logged model', async () => {
    const config = loadExperiment(base, [`tracking.dir=${join(root, 'local')}`]);
    const catalog = createCatalog(builtinPlugins());
    const { runPath } = await runExperiment(config, catalog, { progress: false, log: () => {} });
    const r = await exportRun(runPath, catalog, { formats: ['npz'] });
    expect(r.mlflowModel).toBeUndefined();
    expect(r.files.npz).toBe('encoder.npz');
  }, 120_000);
});
