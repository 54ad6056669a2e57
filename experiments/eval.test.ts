import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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
    // 2,048 of 60,000 bank images, 500 of 10,000 test images: a subset, kept apart
    const doc = JSON.parse(readFileSync(join(run.runPath, 'eval', 'knn-subset.json'), 'utf8'));
    expect(doc.knn_accuracy_subset).toBe(run.result.knn.trained);
    expect(doc).toMatchObject({ knn_subset_bank_size: 2048, knn_subset_test_size: 500 });
    expect(doc.weights).toBe(join(run.runPath, 'state', 'final.bin'));
    expect(stdout).toContain('knn_accuracy_subset');
    expect(existsSync(join(run.runPath, 'eval', 'knn.json'))).toBe(false);
  });

  it('eval linear trains a probe on frozen features and records top-1 / top-5 in the run', async () => {
    const { code, stderr, stdout } = await cli([
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
    expect(summary.eval_results.linear).toBeUndefined(); // 6,000 of 60,000: a subset
    const linear = summary.eval_results.linear_subset;
    expect(linear.linear_subset_train_size).toBe(6000);
    expect(linear.epochs).toBe(3);
    expect(linear.linear_top1_subset).toBeGreaterThan(0.6); // chance is 0.1
    expect(linear.linear_top5_subset).toBeGreaterThan(linear.linear_top1_subset);
    // the lr was selected on 600 held-out training images among the six candidates
    const { lr_selection: sel } = linear;
    expect(sel).toMatchObject({ held_out: 600, fitted: 5400 });
    expect(sel.candidates.map((c: { lr: number }) => c.lr)).toEqual([0.1, 0.3, 1, 3, 10, 30]);
    const best = Math.max(...sel.candidates.map((c: { held_out_top1: number }) => c.held_out_top1));
    expect(
      sel.candidates.find((c: { lr: number }) => c.lr === linear.linear_lr_subset),
    ).toMatchObject({ held_out_top1: best });
    expect(stdout).toContain(`linear_lr_subset ${linear.linear_lr_subset}`);
    expect(summary.eval_results.knn_subset).toBeDefined(); // the earlier result is kept
    expect(summary.status).toBe('finished');
    const last = readFileSync(join(run.runPath, 'metrics.jsonl'), 'utf8').trim().split('\n').pop()!;
    expect(JSON.parse(last)).toMatchObject({
      step: run.result.steps,
      linear_top1_subset: linear.linear_top1_subset,
      linear_lr_subset: linear.linear_lr_subset,
      linear_subset_train_size: 6000,
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
