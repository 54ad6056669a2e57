import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { BankSource, ContrastiveMethod, NoKeyEncoder, type TrainingDataset } from '@contrast/core';
import { loadFashionMnist, subsetTrain } from '@contrast/data';
import { createCatalog, createStepHarness } from '@contrast/trainer';
import { memoryBankPlugin } from './index.js';

const catalog = () => createCatalog([memoryBankPlugin()]);
const partsOf = (h: ReturnType<typeof createStepHarness>) => (h.method as ContrastiveMethod).parts;
const sourceOf = (h: ReturnType<typeof createStepHarness>) => partsOf(h).source as BankSource;
const base = {
  name: 'bank-test',
  data: { trainSubset: 512 },
  model: { encoder: 'convnet' as const, width: 0.25, dim: 16 },
  strategy: { name: 'memory-bank', negatives: 64 },
  optim: { batchSize: 16, lr: 0.05 },
  loss: { temperature: 0.07 },
};

describe('memory-bank plugin', () => {
  it('binds a bank of one row per training sample, no key encoder, InfoNCE by default', () => {
    const h = createStepHarness(base, catalog());
    const bank = sourceOf(h).bank;
    expect(bank.size).toBe(512);
    expect(partsOf(h).keyEncoder).toBeInstanceOf(NoKeyEncoder);
    expect(partsOf(h).loss.name).toBe('infonce');
    // InstDisc init: uniform in [-s, s], s = 1/sqrt(D/3)
    const s = 1 / Math.sqrt(16 / 3);
    expect(tf.max(tf.abs(bank.rows)).dataSync()[0]).toBeLessThanOrEqual(s);
    h.dispose();
  });

  it("rewrites exactly the batch's rows with the normalised mix after a step", () => {
    const h = createStepHarness(base, catalog());
    const bank = sourceOf(h).bank;
    const before = bank.rows.arraySync() as number[][];
    const b = h.nextBatch();
    const idx = Array.from(b.indexArray);
    // the query features the step will write: BN batch statistics, weights before the step
    const q = h.encoder.embed(b.x1, true).arraySync() as number[][];
    sourceOf(h).afterStep({
      query: tf.tensor2d(q),
      key: undefined,
      indices: b.indices,
      indexArray: b.indexArray,
    });
    const after = bank.rows.arraySync() as number[][];
    idx.forEach((row, i) => {
      const mix = before[row]!.map((v, d) => 0.5 * v + 0.5 * q[i]![d]!);
      const norm = Math.hypot(...mix);
      mix.forEach((v, d) => expect(after[row]![d]).toBeCloseTo(v / norm, 5));
    });
    const untouched = before.findIndex((_, r) => !idx.includes(r));
    expect(after[untouched]).toEqual(before[untouched]);
    tf.dispose([b.x1, b.x2, b.indices]);
    h.dispose();
  });

  it("two-way (loss.symmetric): each row is written once, towards the mean of both views' queries", () => {
    const h = createStepHarness(
      { ...base, loss: { temperature: 0.07, symmetric: true } },
      catalog(),
    );
    const bank = sourceOf(h).bank;
    const before = bank.rows.arraySync() as number[][];
    const b = h.nextBatch();
    // both directions' queries, as the step computes them (weights before the step)
    const q1 = h.encoder.embed(b.x1, true).arraySync() as number[][];
    const q2 = h.encoder.embed(b.x2, true).arraySync() as number[][];
    const out = h.stepOn(b, 0.05);
    tf.dispose([out.loss, ...Object.values(out.metrics)]);
    const after = bank.rows.arraySync() as number[][];
    Array.from(b.indexArray).forEach((row, i) => {
      const mix = before[row]!.map((v, d) => 0.5 * v + 0.25 * (q1[i]![d]! + q2[i]![d]!));
      const norm = Math.hypot(...mix);
      mix.forEach((v, d) => expect(after[row]![d]).toBeCloseTo(v / norm, 4));
    });
    tf.dispose([b.x1, b.x2, b.indices]);
    h.dispose();
  });

  it('trains real steps without leaking tensors, with InfoNCE and with NCE', () => {
    for (const loss of ['infonce', 'nce']) {
      const h = createStepHarness({ ...base, loss: { name: loss, temperature: 0.07 } }, catalog());
      const { losses, tensorCounts } = h.run(8);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(new Set(tensorCounts.slice(1)).size).toBe(1);
      h.dispose();
    }
  });

  it('trains with NCE at temperature 0.005 (log space): finite loss, finite weights that move', () => {
    const h = createStepHarness({ ...base, loss: { name: 'nce', temperature: 0.005 } }, catalog());
    const before = h.encoder.parameters().map((p) => p.dataSync().slice());
    const { losses } = h.run(40);
    expect(losses.every(Number.isFinite)).toBe(true);
    const after = h.encoder.parameters().map((p) => p.dataSync());
    expect(after.every((w) => w.every(Number.isFinite))).toBe(true);
    const moved = after.some((w, i) => w.some((v, j) => v !== before[i]![j]));
    expect(moved).toBe(true);
    h.dispose();
  });

  it('round-trips the bank through its state', () => {
    const a = createStepHarness(base, catalog());
    a.step();
    const b = createStepHarness({ ...base, seed: 9 }, catalog());
    sourceOf(b).loadState(sourceOf(a).state());
    expect(sourceOf(b).bank.rows.arraySync()).toEqual(sourceOf(a).bank.rows.arraySync());
    const c = createStepHarness({ ...base, data: { trainSubset: 256 } }, catalog());
    expect(() => sourceOf(c).loadState(sourceOf(a).state())).toThrow(
      /saved bank has shape \[512, 16\], expected \[256, 16\]/,
    );
    [a, b, c].forEach((h) => h.dispose());
  });

  it('a state restored mid-run draws the same negatives as the run it was taken from', () => {
    const a = createStepHarness(base, catalog());
    const draws: Int32Array[] = [];
    const source = sourceOf(a);
    const gather = source.bank.gather.bind(source.bank);
    source.bank.gather = (i) => {
      if (i instanceof Int32Array) draws.push(Int32Array.from(i));
      return gather(i);
    };
    const step = (b: ReturnType<typeof a.nextBatch>) => {
      const out = a.stepOn(b, 0.05);
      tf.dispose([out.loss, ...Object.values(out.metrics)]);
    };
    const [b1, b2] = [a.nextBatch(), a.nextBatch()];
    step(b1);
    const saved = source.state();
    const snapshot = {
      tensors: { bank: tf.clone(saved.tensors.bank!) },
      values: structuredClone(saved.values),
    };
    step(b2); // draws the second step's negatives
    const tensors = tf.memory().numTensors;
    source.loadState(snapshot);
    step(b2); // the same batch after the restore: the same negatives again
    expect(tf.memory().numTensors).toBe(tensors); // nothing leaked by the restore or the step
    expect(draws).toHaveLength(3);
    expect(draws[2]).toEqual(draws[1]);
    expect(draws[1]).not.toEqual(draws[0]);
    tf.dispose([b1.x1, b1.x2, b1.indices, b2.x1, b2.x2, b2.indices]);
    tf.dispose(snapshot.tensors.bank);
    a.dispose();
  });

  it('refuses K larger than the bank and in-batch losses before training', () => {
    expect(() =>
      createStepHarness({ ...base, strategy: { name: 'memory-bank', negatives: 600 } }, catalog()),
    ).toThrow(/strategy.negatives.*K = 600 is larger than the 496 bank rows available/s);
    expect(() => createStepHarness({ ...base, loss: { name: 'nt-xent' } }, catalog())).toThrow(
      /use one of: infonce, nce/,
    );
  });

  it('refuses a dataset that cannot give sample indices', () => {
    const ds: TrainingDataset = { ...subsetTrain(loadFashionMnist(), 512), providesIndices: false };
    const cat = catalog();
    cat.datasets.register('no-indices', () => ds);
    expect(() => createStepHarness({ ...base, data: { dataset: 'no-indices' } }, cat)).toThrow(
      expect.objectContaining({
        code: 'CONTRAST_CONFIG',
        field: 'data.dataset',
        message: expect.stringMatching(/does not give sample indices/),
      }),
    );
  });
});
