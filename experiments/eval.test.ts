import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadExperiment } from '@contrast/core';
import { builtinPlugins } from '@contrast/cli';
import { createCatalog, runExperiment, type RunOutcome } from '@contrast/trainer';
import { cli } from './cli.js';

describe('evaluation commands', () => {
  let run: RunOutcome;

  beforeAll(async () => {
    const root = mkdtempSync(join(tmpdir(), 'contrast-eval-'));
    writeFileSync(
      join(root, 'base.yaml'),
      `name: eval-tiny
data: { trainSubset: 2048 }
model: { encoder: convnet, width: 0.5, dim: 32 }
strategy: { name: momentum-queue, queueSize: 512 }
optim: { batchSize: 128, epochs: 1 }
eval: { knn: { every: 1, testSize: 500, bankSize: 2048 }, baselines: false }
tracking: { dir: ${join(root, 'runs')} }
`,
    );
    const config = loadExperiment(join(root, 'base.yaml'));
    run = await runExperiment(config, createCatalog(builtinPlugins()), {
      progress: false,
      log: () => {},
    });
  }, 300_000);

  it('eval knn reloads the trained encoder exactly: same bank and test give the training-time accuracy', async () => {
    const { code, stdout } = await cli([
      'eval',
      'knn',
      run.runPath,
      '--bank',
      '2048',
      '--test',
      '500',
    ]);
    expect(code).toBe(0);
    const doc = JSON.parse(readFileSync(join(run.runPath, 'eval', 'knn.json'), 'utf8'));
    expect(doc.knn_accuracy).toBe(run.result.knn.trained);
    expect(doc.weights).toBe(join(run.runPath, 'state', 'final.bin'));
    expect(stdout).toContain('knn_accuracy');
  });

  it('eval linear trains a probe on frozen features and records top-1 / top-5 in the run', async () => {
    const { code, stderr } = await cli([
      'eval',
      'linear',
      run.runPath,
      '--epochs',
      '3',
      '--train',
      '6000',
    ]);
    expect(code, stderr).toBe(0);
    const summary = JSON.parse(readFileSync(join(run.runPath, 'summary.json'), 'utf8'));
    const linear = summary.eval_results.linear;
    expect(linear.train_size).toBe(6000);
    expect(linear.epochs).toBe(3);
    expect(linear.linear_top1).toBeGreaterThan(0.6); // chance is 0.1
    expect(linear.linear_top5).toBeGreaterThan(linear.linear_top1);
    expect(summary.eval_results.knn).toBeDefined(); // the earlier result is kept
    expect(summary.status).toBe('finished');
    const last = readFileSync(join(run.runPath, 'metrics.jsonl'), 'utf8').trim().split('\n').pop()!;
    expect(JSON.parse(last)).toMatchObject({
      step: run.result.steps,
      linear_top1: linear.linear_top1,
    });
  });

  it('a run ends with alignment and uniformity of its embeddings on test images', () => {
    const { alignment, uniformity } = run.result;
    expect(alignment).toBeGreaterThan(0); // two different views never embed identically
    expect(alignment).toBeLessThan(2); // better than orthogonal views on average
    expect(uniformity).toBeLessThan(0);
    expect(uniformity).toBeGreaterThan(-4); // log E exp(-2 d^2) >= -2 * 4 ... and far from it at this size
    const summary = JSON.parse(readFileSync(join(run.runPath, 'summary.json'), 'utf8'));
    expect(summary.alignment).toBe(alignment);
  });

  it('refuses a folder that is not a run, and a bad flag', async () => {
    const r = await cli(['eval', 'linear', tmpdir()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('CONTRAST_STATE');
    expect(r.stderr).toContain('not a run folder');
    const f = await cli(['eval', 'linear', run.runPath, '--epochs', 'many']);
    expect(f.code).toBe(2);
    expect(f.stderr).toContain('--epochs');
  });
});
