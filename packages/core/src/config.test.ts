import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyOverrides, loadExperiment, mergeExperiment, parseExperiment } from './config.js';
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
    // (the optim section's unknown fields are refused when the optimizer is known: compose)
    const e = configError(() => parseExperiment({ ...minimal, checkpoint: { everyStep: 1 } }));
    expect(e.field).toBe('checkpoint.everyStep');
    const e2 = configError(() => parseExperiment({ ...minimal, checkpoint: { kep: 1 } }));
    expect(e2.message).toContain("did you mean 'keep'?");
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

  it("switching the method by name drops the previous method's fields, saying which", () => {
    const base = {
      name: 'x',
      strategy: { name: 'momentum-queue', queueSize: 4096, momentum: 0.99 },
    };
    const notes: string[] = [];
    const note = (line: string) => notes.push(line);
    expect(applyOverrides(base, ['strategy.name=moco-v3'], { note }).strategy).toEqual({
      name: 'moco-v3',
    });
    expect(notes).toEqual([
      "strategy.name momentum-queue -> moco-v3: dropped momentum-queue's fields queueSize=4096, momentum=0.99 (set strategy.<field> to give moco-v3 one)",
    ]);
    // a field given with the switch is kept, before or after the name
    expect(
      applyOverrides(base, ['strategy.momentum=0.5', 'strategy.name=memory-bank'], { note })
        .strategy,
    ).toEqual({ name: 'memory-bank', momentum: 0.5 });
    expect(notes[1]).toContain("dropped momentum-queue's fields queueSize=4096 (");
    // the same name is no switch: every field stays, nothing is said
    expect(
      applyOverrides(base, ['strategy.name=momentum-queue', 'strategy.queueSize=64'], { note })
        .strategy,
    ).toEqual({ name: 'momentum-queue', queueSize: 64, momentum: 0.99 });
    expect(notes).toHaveLength(2);
    expect(base.strategy).toEqual({ name: 'momentum-queue', queueSize: 4096, momentum: 0.99 });
  });

  it("switching the loss by name drops the previous loss's options, keeping tau and symmetry", () => {
    const base = {
      name: 'x',
      strategy: { name: 'barlow' },
      loss: { name: 'barlow-twins', lambda: 0.005, temperature: 0.2, symmetric: true },
    };
    const notes: string[] = [];
    const note = (line: string) => notes.push(line);
    expect(applyOverrides(base, ['loss.name=infonce'], { note }).loss).toEqual({
      name: 'infonce',
      temperature: 0.2,
      symmetric: true,
    });
    expect(notes).toEqual([
      "loss.name barlow-twins -> infonce: dropped barlow-twins's fields lambda=0.005 (set loss.<field> to give infonce one)",
    ]);
    // extends: a child naming another loss inherits tau and symmetry, not the options
    expect(mergeExperiment(base, { loss: { name: 'vicreg', mu: 25 } }).loss).toEqual({
      name: 'vicreg',
      mu: 25,
      temperature: 0.2,
      symmetric: true,
    });
    expect(mergeExperiment(base, { loss: { lambda: 0.01 } }).loss).toMatchObject({
      name: 'barlow-twins',
      lambda: 0.01,
    });
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

describe('extends', () => {
  const dir = () => mkdtempSync(join(tmpdir(), 'contrast-extends-'));

  it('merges mappings key by key through a chain; lists and values are replaced', () => {
    const d = dir();
    writeFileSync(
      join(d, 'base.yaml'),
      'name: base\nstrategy: { name: momentum-queue, queueSize: 4096, momentum: 0.99 }\n' +
        'optim: { lr: 0.03, epochs: 4 }\ndata: { augmentation: { crop: { scale: [0.2, 1] } } }\n',
    );
    writeFileSync(join(d, 'mid.yaml'), 'extends: base.yaml\nname: mid\noptim: { epochs: 8 }\n');
    writeFileSync(
      join(d, 'leaf.yaml'),
      'extends: mid.yaml\nname: leaf\nstrategy: { momentum: 0.999 }\ndata: { augmentation: { crop: { scale: [0.08, 1] } } }\n',
    );
    const c = loadExperiment(join(d, 'leaf.yaml'));
    expect(c.name).toBe('leaf');
    expect(c.optim).toMatchObject({ lr: 0.03, epochs: 8 });
    expect(c.strategy).toMatchObject({ name: 'momentum-queue', queueSize: 4096, momentum: 0.999 });
    expect(c.data.augmentation.crop.scale).toEqual([0.08, 1]);
    // --set still applies last
    expect(loadExperiment(join(d, 'leaf.yaml'), ['optim.epochs=2']).optim.epochs).toBe(2);
  });

  it('a different strategy replaces the whole section', () => {
    const d = dir();
    writeFileSync(
      join(d, 'base.yaml'),
      'name: b\nstrategy: { name: momentum-queue, queueSize: 64 }\n',
    );
    writeFileSync(join(d, 'e2e.yaml'), 'extends: base.yaml\nstrategy: { name: end-to-end }\n');
    expect(loadExperiment(join(d, 'e2e.yaml')).strategy).toEqual({ name: 'end-to-end' });
  });

  it('refuses a cycle and a missing base, naming the field', () => {
    const d = dir();
    writeFileSync(join(d, 'a.yaml'), 'extends: b.yaml\nname: a\n');
    writeFileSync(join(d, 'b.yaml'), 'extends: a.yaml\nname: b\n');
    const cycle = configError(() => loadExperiment(join(d, 'a.yaml')));
    expect(cycle.field).toBe('extends');
    expect(cycle.message).toContain('cycle');
    writeFileSync(join(d, 'c.yaml'), 'extends: nowhere.yaml\nname: c\n');
    const missing = configError(() => loadExperiment(join(d, 'c.yaml')));
    expect(missing.message).toContain('nowhere.yaml does not exist');
  });
});
