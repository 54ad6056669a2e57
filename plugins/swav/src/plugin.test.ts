import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ConfigError, decodeBundle, embedCrops, encodeBundle, swavLoss } from '@contrast/core';
import { disposeBatch } from '@contrast/data';
import { createCatalog, createStepHarness } from '@contrast/trainer';
import { Swav, swavPlugin } from './index.js';

const MULTI_CROP = [
  { name: 'global', count: 2 },
  { name: 'local', count: 2, crop: { size: 12, scale: [0.2, 0.5] } },
];

/** 64 samples at batch 16: 4 steps per epoch. */
const experiment = (
  strategy: Record<string, unknown> = {},
  loss: Record<string, unknown> = {},
) => ({
  name: 'swav-test',
  data: { trainSubset: 64, views: MULTI_CROP },
  model: { encoder: 'convnet' as const, width: 0.25, dim: 16, hiddenDim: 32 },
  strategy: { name: 'swav', prototypes: 10, ...strategy },
  loss,
  optim: { batchSize: 16, lr: 0.05 },
});
const harness = (
  strategy: Record<string, unknown> = {},
  loss: Record<string, unknown> = {},
  bnSplits = 1,
) => {
  const e = experiment(strategy, loss);
  return createStepHarness(
    { ...e, model: { ...e.model, bnSplits } },
    createCatalog([swavPlugin()]),
  );
};
const swavOf = (h: { method: unknown }) => h.method as Swav;
const prototypeValues = (h: { method: unknown }) =>
  Array.from(swavOf(h).prototypes.weights.dataSync());
const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
const ctxOf = (h: ReturnType<typeof harness>) => ({ mark: () => undefined, clock: h.clock });

describe('swav plugin', () => {
  it('has its own loss with the paper settings and the prototypes frozen for 1 epoch', () => {
    const h = harness();
    expect(h.method).toBeInstanceOf(Swav);
    expect(h.config.loss).toEqual({
      name: 'swav',
      temperature: 0.1,
      symmetric: false,
      epsilon: 0.05,
      sinkhornIterations: 3,
    });
    const [encoder, prototypes] = h.method.parameterGroups();
    expect(encoder).toEqual({ params: h.encoder.parameters() });
    expect(prototypes).toEqual({ params: [swavOf(h).prototypes.weights], frozen: { epochs: 1 } });
    expect(Object.keys(h.method.state())).toEqual(['prototypes']); // no queue by default
    expect(h.method.chanceLoss?.(16)).toBeCloseTo(Math.log(10), 12);
    h.dispose();
  });

  it("the step's loss is swavLoss over every crop's scores, codes from the 2 global crops", () => {
    const h = harness({}, { epsilon: 0.1, sinkhornIterations: 2 });
    const b = h.nextBatch();
    expect(b.crops.map((c) => c.shape[1])).toEqual([28, 28, 12, 12]);
    h.method.prepare(b, ctxOf(h));
    const got = tf.tidy(() => h.method.objective(b, undefined, ctxOf(h)).loss.dataSync()[0]!);
    const want = tf.tidy(() => {
      const w = swavOf(h).prototypes.weights;
      // each group's crops through the encoder as one batch: [global 0; global 1], [local 0; local 1]
      const [g, l] = [0, 2].map((c) => h.encoder.embed(tf.concat(b.crops.slice(c, c + 2)), true));
      const z = [...tf.split(g!, 2), ...tf.split(l!, 2)];
      const scores = z.map((e) => tf.matMul<tf.Tensor2D>(e, w));
      const targets = [0, 1].map((crop) => ({ crop, scores: scores[crop]! }));
      const loss = swavLoss({ epsilon: 0.1, iterations: 2 });
      return loss.compute({ scores, targets, temperature: 0.1 }).loss.dataSync()[0]!;
    });
    expect(got).toBeCloseTo(want, 5);
    disposeBatch(b);
    h.dispose();
  });

  it("with 2 BN groups, each holds a half of every crop of a group: what 2 workers' BN sees", () => {
    const whole = harness({}, {}, 2);
    const half = harness();
    const b = whole.nextBatch();
    const n = b.crops[0]!.shape[0] / 2;
    const halves = (first: boolean) => ({
      ...b,
      crops: b.crops.map((c) => c.slice(first ? 0 : n, n)),
    });
    const [got, first, second] = tf.tidy(() => [
      embedCrops(whole.encoder, b, 2).map((z) => z.arraySync()),
      embedCrops(half.encoder, halves(true), 1).map((z) => z.arraySync()),
      embedCrops(half.encoder, halves(false), 1).map((z) => z.arraySync()),
    ]);
    got!.forEach((z, c) =>
      [...first![c]!, ...second![c]!].forEach((row, i) =>
        row.forEach((v, j) => expect(z[i]![j]!).toBeCloseTo(v, 5)),
      ),
    );
    disposeBatch(b);
    whole.dispose();
    half.dispose();
  });

  it('normalises the prototypes before each step; frozen in epoch 1, trained after', () => {
    const h = harness();
    const initial = prototypeValues(h);
    h.run(1);
    const normalised = prototypeValues(h);
    expect(normalised).not.toEqual(initial);
    const w = swavOf(h).prototypes.weights;
    const norms = tf.tidy(() => Array.from(tf.norm(w, 'euclidean', 0).dataSync()));
    norms.forEach((n) => expect(n).toBeCloseTo(1, 5));
    h.run(3); // the rest of epoch 1: only renormalised again (float32 rounding, no update)
    expect(maxDiff(prototypeValues(h), normalised)).toBeLessThan(1e-6);
    h.run(1); // epoch 2
    expect(maxDiff(prototypeValues(h), normalised)).toBeGreaterThan(1e-4);
    h.dispose();
  });

  it('fills the queue from its start epoch, uses it once full; no tensor leaks', () => {
    const h = harness({ queueLength: 32, queueStartEpoch: 1 });
    const queue = swavOf(h).queue!;
    expect(queue.rows.size).toBe(32);
    expect(queue.rows.dim).toBe(2 * 16); // the 2 global crops' embeddings side by side
    const { losses, tensorCounts } = h.run(4); // epoch 1: not filled
    expect(queue.rows.ptr).toBe(0);
    expect(queue.full).toBe(false);
    const more = h.run(4);
    expect(queue.full).toBe(true);
    expect(queue.rows.ptr).toBe(0);
    expect([...losses, ...more.losses].every(Number.isFinite)).toBe(true);
    const counts = [...tensorCounts, ...more.tensorCounts];
    expect(new Set(counts.slice(1)).size).toBe(1);
    h.dispose();
  });

  it('computes the codes with the queue rows first once it is full', () => {
    const h = harness({ queueLength: 16, queueStartEpoch: 0 });
    h.run(1); // 16 rows: full
    const b = h.nextBatch();
    h.method.prepare(b, ctxOf(h));
    const got = tf.tidy(() => h.method.objective(b, undefined, ctxOf(h)).loss.dataSync()[0]!);
    const [withQueue, without] = [true, false].map((queued) =>
      tf.tidy(() => {
        const w = swavOf(h).prototypes.weights;
        const z = embedCrops(h.encoder, b, 1);
        const scores = z.map((e) => tf.matMul<tf.Tensor2D>(e, w));
        const rows = swavOf(h).queue!.embeddings; // [16, 2 x 16]
        const targets = [0, 1].map((crop) => ({
          crop,
          scores: queued
            ? (tf.concat([
                tf.matMul(rows.slice([0, crop * 16], [-1, 16]), w),
                scores[crop]!,
              ]) as tf.Tensor2D)
            : scores[crop]!,
        }));
        const loss = swavLoss({ epsilon: 0.05, iterations: 3 });
        return loss.compute({ scores, targets, temperature: 0.1 }).loss.dataSync()[0]!;
      }),
    );
    expect(got).toBeCloseTo(withQueue!, 5);
    expect(Math.abs(got - without!)).toBeGreaterThan(1e-4);
    disposeBatch(b);
    h.dispose();
  });

  it('checkpoint round trip: prototypes, queue rows, pointer and fill resume; the next step is the same', () => {
    const settings = { queueLength: 32, queueStartEpoch: 0 };
    const a = harness(settings);
    a.run(3);
    const { tensors, values } = a.session.stateBundle();
    const b = harness(settings);
    b.session.loadState(decodeBundle(encodeBundle(tensors, values)));
    const [qa, qb] = [swavOf(a).queue!, swavOf(b).queue!];
    expect(qb.full).toBe(true);
    expect(qb.rows.ptr).toBe(qa.rows.ptr);
    expect(Array.from(qb.embeddings.dataSync())).toEqual(Array.from(qa.embeddings.dataSync()));
    expect(prototypeValues(b)).toEqual(prototypeValues(a));
    a.clock.step = b.clock.step = 3;
    const batch = a.nextBatch();
    const copy = {
      ...batch,
      crops: batch.crops.map((c) => c.clone()),
      indices: batch.indices.clone(),
    };
    Object.assign(copy, { x1: copy.crops[0], x2: copy.crops[1] });
    const la = a.session.step(batch, 0.05);
    const lb = b.session.step(copy, 0.05);
    expect(lb.loss.dataSync()[0]).toBe(la.loss.dataSync()[0]);
    expect(Array.from(qb.embeddings.dataSync())).toEqual(Array.from(qa.embeddings.dataSync()));
    tf.dispose([la.loss, lb.loss]);
    disposeBatch(batch);
    disposeBatch(copy);
    a.dispose();
    b.dispose();
  });

  it('trains real steps over 4 crops without leaking tensors; the loss falls', () => {
    const h = harness({ freezePrototypesEpochs: 0 });
    const { losses, tensorCounts } = h.run(10);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[9]!).toBeLessThan(losses[0]!);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    h.dispose();
  });

  it('refuses a loss of another kind, a queue shorter than a batch, a misspelt loss option', () => {
    const build = (strategy: Record<string, unknown>, loss: Record<string, unknown>) => () =>
      createStepHarness(experiment(strategy, loss), createCatalog([swavPlugin()]));
    expect(build({}, { name: 'infonce' })).toThrow(ConfigError);
    expect(build({ queueLength: 8 }, {})).toThrow(/queueLength/);
    expect(build({}, { epsilom: 0.05 })).toThrow(/epsilon/);
  });
});
