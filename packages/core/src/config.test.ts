import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyOverrides, loadExperiment, parseExperiment } from './config.js';
import { ConfigError } from './errors.js';

const minimal = { name: 'x', strategy: { name: 'momentum-queue' } };

function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('experiment config', () => {
  it('fills defaults', () => {
    const c = parseExperiment(minimal);
    expect(c.optim.batchSize).toBe(256);
    expect(c.eval.knn).toMatchObject({ k: 200, t: 0.1 });
    expect(c.data.augmentation.crop.scale).toEqual([0.2, 1]);
  });

  it('names the field and the fix for a wrong type', () => {
    const e = configError(() => parseExperiment({ ...minimal, optim: { lr: 'fast' } }));
    expect(e.code).toBe('CONTRAST_CONFIG');
    expect(e.field).toBe('optim.lr');
    expect(e.message).toContain('use a number');
  });

  it('refuses zero and negative sizes', () => {
    expect(configError(() => parseExperiment({ ...minimal, optim: { batchSize: 0 } })).field).toBe(
      'optim.batchSize',
    );
    expect(
      configError(() => parseExperiment({ ...minimal, loss: { temperature: -1 } })).field,
    ).toBe('loss.temperature');
  });

  it('refuses a tracking URI that is not an MLflow server address', () => {
    const e = configError(() =>
      parseExperiment({ ...minimal, tracking: { uri: 'file:///tmp/mlruns' } }),
    );
    expect(e.field).toBe('tracking.uri');
    expect(e.message).toContain('http://');
    expect(
      parseExperiment({ ...minimal, tracking: { uri: 'https://mlflow.example:443' } }).tracking.uri,
    ).toBe('https://mlflow.example:443');
  });

  it('suggests the nearest field for a misspelled key', () => {
    const e = configError(() => parseExperiment({ ...minimal, optim: { learningRate: 1 } }));
    expect(e.field).toBe('optim.learningRate');
    const e2 = configError(() => parseExperiment({ ...minimal, optim: { epoch: 1 } }));
    expect(e2.message).toContain("did you mean 'epochs'?");
  });

  it('applies --set overrides with YAML typing', () => {
    const raw = applyOverrides(minimal, [
      'optim.lr=0.5',
      'data.augmentation.crop.scale=[0.08, 1]',
      'name=y',
    ]);
    const c = parseExperiment(raw);
    expect(c.optim.lr).toBe(0.5);
    expect(c.data.augmentation.crop.scale).toEqual([0.08, 1]);
    expect(c.name).toBe('y');
    expect(minimal).toEqual({ name: 'x', strategy: { name: 'momentum-queue' } }); // input untouched
  });

  it('rejects a malformed override', () => {
    expect(configError(() => applyOverrides(minimal, ['optim.lr'])).message).toContain('key=value');
    expect(configError(() => applyOverrides(minimal, ['name.x=1'])).field).toBe('name.x');
  });

  it('loads a YAML file and reports unreadable ones', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-cfg-'));
    writeFileSync(
      join(dir, 'a.yaml'),
      'name: a\nstrategy: { name: momentum-queue, queueSize: 8 }\n',
    );
    expect(loadExperiment(join(dir, 'a.yaml'), ['seed=3']).seed).toBe(3);
    writeFileSync(join(dir, 'b.yaml'), 'name: [unclosed');
    expect(configError(() => loadExperiment(join(dir, 'b.yaml'))).message).toContain(
      'not valid YAML',
    );
    expect(configError(() => loadExperiment(join(dir, 'missing.yaml'))).message).toContain(
      'ENOENT',
    );
  });
});
