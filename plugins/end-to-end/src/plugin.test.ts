import { describe, expect, it } from 'vitest';
import { BatchKeysSource, ContrastiveMethod, SharedKeyEncoder } from '@contrast/core';
import { createCatalog, createStepHarness } from '@contrast/trainer';
import { endToEndPlugin } from './index.js';

const catalog = () => createCatalog([endToEndPlugin()]);
const base = {
  name: 'e2e-test',
  data: { trainSubset: 512 },
  model: { encoder: 'convnet' as const, width: 0.25, dim: 16, head: 'mlp' as const },
  strategy: { name: 'end-to-end' },
  optim: { batchSize: 16, lr: 0.05 },
  loss: { temperature: 0.5 },
};
const partsOf = (h: ReturnType<typeof createStepHarness>) => (h.method as ContrastiveMethod).parts;

describe('end-to-end plugin', () => {
  it('uses the query encoder for keys, in-batch negatives and NT-Xent', () => {
    const h = createStepHarness(base, catalog());
    const parts = partsOf(h);
    expect(parts.source).toBeInstanceOf(BatchKeysSource);
    expect(parts.keyEncoder).toBeInstanceOf(SharedKeyEncoder);
    expect(parts.keyEncoder.withGradient).toBe(true);
    expect(parts.loss.name).toBe('nt-xent');
    expect(h.config.loss).toMatchObject({ name: 'nt-xent', temperature: 0.5, symmetric: false });
    h.dispose();
  });

  it('trains real steps without leaking tensors; the first loss is near chance log(2N - 1)', () => {
    const h = createStepHarness(base, catalog());
    const first = h.step();
    expect(first.loss).toBeGreaterThan(Math.log(31) - 1);
    expect(first.loss).toBeLessThan(Math.log(31) + 0.5);
    expect(first.metrics.pretext_accuracy).toBeGreaterThanOrEqual(0);
    const { losses, tensorCounts } = h.run(8);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(new Set(tensorCounts).size).toBe(1);
    h.dispose();
  });

  it('has no state to save besides the optimizer, and says so consistently', () => {
    const h = createStepHarness(base, catalog());
    const empty = { tensors: {}, values: {} };
    expect(h.method.state()).toEqual({ key_encoder: empty, strategy: empty });
    h.method.loadState(h.method.state());
    h.dispose();
  });

  it('refuses a batch of 1, explicit-negative losses and a non-positive temperature before training', () => {
    expect(() => createStepHarness({ ...base, optim: { batchSize: 1 } }, catalog())).toThrow(
      expect.objectContaining({ code: 'CONTRAST_CONFIG', field: 'optim.batchSize' }),
    );
    expect(() => createStepHarness({ ...base, loss: { name: 'infonce' } }, catalog())).toThrow(
      /'infonce' needs explicit negatives .* but method 'end-to-end' provides in-batch negatives.*use one of: nt-xent/s,
    );
    expect(() => createStepHarness({ ...base, loss: { temperature: 0 } }, catalog())).toThrow(
      /loss.temperature/,
    );
  });
});
