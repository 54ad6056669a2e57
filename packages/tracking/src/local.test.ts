import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createRunDirectory, LocalRunTracker } from './local.js';

describe('local run directory', () => {
  it('records config, every metric and the summary', async () => {
    const root = mkdtempSync(join(tmpdir(), 'contrast-runs-'));
    const run = createRunDirectory(root, 'exp');
    const t = new LocalRunTracker(run, 7);
    t.logParams({ name: 'exp', optim: { lr: 0.1 } });
    for (let i = 0; i < 20; i++) t.logMetrics({ step: i, epoch: 0, loss: 1 / (i + 1) });
    t.setSummary({ knn: 0.5 });
    await t.close('finished');
    const lines = readFileSync(join(run.path, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.step)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(JSON.parse(readFileSync(join(run.path, 'summary.json'), 'utf8'))).toMatchObject({
      status: 'finished',
      knn: 0.5,
    });
    expect(readFileSync(join(run.path, 'config.yaml'), 'utf8')).toContain('lr: 0.1');
    expect(readdirSync(run.path).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('a summary written after close (the MLflow run id, from a late upload) keeps the final status', async () => {
    const run = createRunDirectory(mkdtempSync(join(tmpdir(), 'contrast-runs-')), 'exp');
    const t = new LocalRunTracker(run);
    t.setSummary({ steps: 5 });
    await t.close('interrupted');
    t.setSummary({ mlflow: { runId: 'abc' } });
    expect(JSON.parse(readFileSync(join(run.path, 'summary.json'), 'utf8'))).toMatchObject({
      status: 'interrupted',
      steps: 5,
      mlflow: { runId: 'abc' },
    });
  });

  it('never reuses a run folder', () => {
    const root = mkdtempSync(join(tmpdir(), 'contrast-runs-'));
    expect(createRunDirectory(root, 'a').path).not.toBe(createRunDirectory(root, 'a').path);
  });

  it('refuses an unwritable root with a coded error', () => {
    const root = mkdtempSync(join(tmpdir(), 'contrast-runs-'));
    const file = join(root, 'file');
    writeFileSync(file, 'x');
    expect(() => createRunDirectory(join(file, 'sub'), 'a')).toThrow(
      expect.objectContaining({ code: 'CONTRAST_RUN_DIR' }),
    );
  });
});
