import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  ContrastError,
  defineOptimizer,
  parseExperiment,
  UnknownNameError,
  z,
  type ExperimentInput,
  type Plugin,
} from '@contrast/core';
import { disposeBatch } from '@contrast/data';
import { createCatalog } from './catalog.js';
import { testMoco } from './test-utils/moco.js';
import { createStepHarness } from './harness.js';
import { createSession } from './session.js';
import { Sgd } from './sgd.js';

const moco = testMoco;

/** Plain SGD without momentum, contributed by a plugin under a new name. */
const plainSgd = defineOptimizer({
  description: 'SGD without momentum',
  optionsSchema: z.object({ dampening: z.number().default(0) }).strict(),
  create: (params) => new Sgd(params, 0),
});
const withOptimizer: Plugin = { ...moco, name: 'moco-plain', optimizers: { plain: plainSgd } };

const experiment = (optim: Record<string, unknown>): ExperimentInput => ({
  name: 'optim',
  data: { trainSubset: 128 },
  model: { encoder: 'convnet', width: 0.25, dim: 16 },
  strategy: { name: 'moco' },
  optim: { batchSize: 32, ...optim },
  eval: { baselines: false, alignUniform: 0 },
});
const compose = (optim: Record<string, unknown>, plugins: Plugin[] = [moco]) =>
  createSession(parseExperiment(experiment(optim)), createCatalog(plugins));
const thrown = (f: () => unknown): ContrastError => {
  try {
    f();
  } catch (e) {
    return e as ContrastError;
  }
  throw new Error('expected an error');
};

describe('optim.optimizer from the registry, its own fields checked by its schema', () => {
  it("fills the optimizer's defaults into the config a run records", () => {
    const s = compose({ optimizer: 'adamw', betas: [0.9, 0.95] });
    expect(s.config.optim).toMatchObject({ optimizer: 'adamw', betas: [0.9, 0.95], eps: 1e-8 });
    expect(s.config.optim).not.toHaveProperty('momentum');
    s.dispose();
    const d = compose({});
    expect(d.config.optim).toMatchObject({ optimizer: 'sgd', momentum: 0.9 });
    expect(d.config.optim).not.toHaveProperty('larsEta');
    d.dispose();
  });

  it('refuses an unknown name, listing the known ones and the nearest', () => {
    const e = thrown(() => compose({ optimizer: 'adamv' }));
    expect(e).toBeInstanceOf(UnknownNameError);
    expect(e.message).toContain('adamw, lars, sgd');
    expect(e.hint).toContain("did you mean 'adamw'?");
  });

  it("refuses another optimizer's field and a misspelt one, naming the field and the fix", () => {
    const other = thrown(() => compose({ optimizer: 'adamw', momentum: 0.9 }));
    expect(other).toBeInstanceOf(ConfigError);
    expect((other as ConfigError).field).toBe('optim.momentum');
    expect(other.message).toContain("of optimizer lars, sgd, not of 'adamw'");
    const typo = thrown(() => compose({ optimizer: 'adamw', bettas: [0.9, 0.95] }));
    expect((typo as ConfigError).field).toBe('optim.bettas');
    expect(typo.hint).toContain("did you mean 'betas'?");
    const range = thrown(() => compose({ optimizer: 'adamw', betas: [0.9, 1] }));
    expect((range as ConfigError).field).toBe('optim.betas.1');
  });

  it("trains with a plugin's optimizer; a second optimizer of the same name is refused", () => {
    const s = compose({ optimizer: 'plain' }, [moco, withOptimizer]);
    expect(s.config.optim).toMatchObject({ optimizer: 'plain', dampening: 0 });
    expect(s.optimizer.state().tensors['momentum_buffer/0']).toBeDefined();
    s.dispose();
    const twice: Plugin = { ...withOptimizer, name: 'again' };
    const e = thrown(() => createCatalog([withOptimizer, twice]));
    expect(e.message).toContain("optimizer named 'plain'");
  });
});

describe('AdamW and group options through a session', () => {
  const optim = {
    optimizer: 'adamw',
    lr: 1e-3,
    weightDecay: 0.1,
    decay: 'no-norm-bias',
    clipGradNorm: 1,
    groups: [{ match: '^encoder/head/', frozen: true }],
  };

  it("keeps a parameter frozen by name untouched, with its optimizer's slots at zero", () => {
    const h = createStepHarness(experiment(optim), createCatalog([moco]));
    h.clock.total = 3;
    const head = h.encoder.namedVariables().get('head/fc/w')!;
    const conv = h.encoder.namedVariables().get('conv1/w')!;
    const [head0, conv0] = [head, conv].map((v) => Float32Array.from(v.dataSync()));
    h.run(2);
    expect(Float32Array.from(head.dataSync())).toEqual(head0);
    expect(Float32Array.from(conv.dataSync())).not.toEqual(conv0);
    const i = h.session.plan.options.findIndex((o) => o.frozenUntil === Infinity);
    expect(h.session.optimizer.state().values.step).toContain(0);
    expect(tf.max(h.session.optimizer.state().tensors[`exp_avg/${i}`]!).dataSync()[0]).toBe(0);
    h.dispose();
  });

  it('resumes exactly from a checkpointed state (moments, step counts, weights)', () => {
    const catalog = createCatalog([moco]);
    const a = createStepHarness(experiment(optim), catalog);
    a.clock.total = 4;
    a.run(2);
    const saved = a.session.stateBundle();
    const copy = {
      tensors: Object.fromEntries(Object.entries(saved.tensors).map(([k, t]) => [k, t.clone()])),
      values: structuredClone(saved.values),
    };
    const b = createStepHarness(experiment(optim), catalog);
    b.session.loadState(copy);
    const batch = a.nextBatch();
    for (const h of [a, b]) {
      h.clock.step = 2;
      h.clock.total = 4;
      const out = h.stepOn(batch, 1e-3);
      tf.dispose([out.loss, ...Object.values(out.metrics)]);
    }
    const after = (h: typeof a) => h.session.stateBundle().tensors;
    const [ta, tb] = [after(a), after(b)];
    for (const k of Object.keys(ta)) {
      expect(Array.from(tb[k]!.dataSync()), k).toEqual(Array.from(ta[k]!.dataSync()));
    }
    expect(b.session.optimizer.state().values.step).toEqual(
      a.session.optimizer.state().values.step,
    );
    disposeBatch(batch);
    a.dispose();
    b.dispose();
  });

  it('leaks no tensor per step with clipping, decay rules and a frozen group', () => {
    const h = createStepHarness(experiment(optim), createCatalog([moco]));
    h.clock.total = 5;
    const { tensorCounts } = h.run(4);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    h.dispose();
  });
});
