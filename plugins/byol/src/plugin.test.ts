import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { MomentumKeyEncoder } from '@contrast/core';
import { createCatalog, createStepHarness, maxAbsDiff, snapshotVariables } from '@contrast/trainer';
import { Byol, byolPlugin } from './index.js';

const experiment = (
  strategy: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) => ({
  name: 'byol-test',
  data: { trainSubset: 512 },
  model: { encoder: 'convnet', width: 0.25, dim: 16, head: 'mlp-bn', hiddenDim: 32 },
  strategy: { name: 'byol', predictorHidden: 32, ...strategy },
  optim: { batchSize: 32, lr: 0.05 },
  ...extra,
});
const harness = (strategy: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
  createStepHarness(experiment(strategy, extra) as never, createCatalog([byolPlugin()]));
const targetOf = (h: ReturnType<typeof harness>) =>
  (h.method as unknown as { target: MomentumKeyEncoder }).target;

describe('byol plugin', () => {
  it('composes an online encoder + predictor, a momentum target, normalised MSE, two-way', () => {
    const h = harness();
    expect(h.method).toBeInstanceOf(Byol);
    expect(h.config.loss).toEqual({ name: 'normalized-mse', symmetric: true });
    const trained = h.method.parameterGroups().flatMap((g) => g.params);
    const target = targetOf(h).keyEncoder.parameters();
    expect(trained.length).toBe(h.encoder.parameters().length + 6); // + predictor fc1, bn, fc2
    expect(target.every((v) => !trained.includes(v) && !v.trainable)).toBe(true);
    expect(Object.keys(h.method.state())).toEqual(['target', 'predictor']);
    h.dispose();
  });

  it('the loss of one step is the sum of both directions, each 2 - 2 cos, from the state before the step', () => {
    const h = harness();
    const b = h.nextBatch();
    const expected = tf.tidy(() => {
      // weights before the step, training-mode BN as the step computes them
      const target = targetOf(h);
      const t1 = target.encode(b.x1);
      const t2 = target.encode(b.x2);
      const predictor = (
        h.method as unknown as { predictor: { apply: (x: tf.Tensor2D, t: boolean) => tf.Tensor2D } }
      ).predictor;
      const p = (x: tf.Tensor4D) => predictor.apply(h.encoder.project(x, true), true);
      const cos = (u: tf.Tensor2D, v: tf.Tensor2D) =>
        tf.sum(tf.mul(tf.div(u, tf.norm(u, 2, 1, true)), tf.div(v, tf.norm(v, 2, 1, true))), 1);
      const l = (u: tf.Tensor2D, v: tf.Tensor2D) => tf.mean(tf.sub(2, tf.mul(2, cos(u, v))));
      return tf.add(l(p(b.x1), t2), l(p(b.x2), t1)).dataSync()[0]!;
    });
    const out = h.stepOn(b, 0.05);
    expect(out.loss.dataSync()[0]).toBeCloseTo(expected, 4);
    expect(Object.keys(out.metrics)).toEqual([]); // no temperature, no pretext accuracy
    tf.dispose([out.loss, b.x1, b.x2, b.indices]);
    h.dispose();
  });

  it('no gradient reaches the target: with tau = 1 it never changes while the online network trains', () => {
    const h = harness({ momentum: 1, momentumSchedule: 'fixed' });
    const t0 = snapshotVariables(targetOf(h).keyEncoder.parameters());
    const o0 = snapshotVariables(h.encoder.parameters());
    h.run(3);
    expect(maxAbsDiff(snapshotVariables(targetOf(h).keyEncoder.parameters()), t0)).toBe(0);
    expect(maxAbsDiff(snapshotVariables(h.encoder.parameters()), o0)).toBeGreaterThan(1e-4);
    h.dispose();
  });

  it('the target follows xi <- tau xi + (1 - tau) theta after the step (tau = 0.5), on a cosine by default', () => {
    const h = harness({ momentum: 0.5, momentumSchedule: 'fixed' });
    const t0 = snapshotVariables(targetOf(h).keyEncoder.parameters());
    h.step();
    const o1 = snapshotVariables(h.encoder.parameters());
    const expected = t0.map((t, i) => t.map((v, j) => 0.5 * v + 0.5 * o1[i]![j]!));
    expect(
      maxAbsDiff(snapshotVariables(targetOf(h).keyEncoder.parameters()), expected),
    ).toBeLessThan(1e-6);
    h.dispose();
    const c = harness({ momentum: 0.996 });
    c.clock.total = 100;
    c.clock.step = 50;
    expect(c.method.stepValues!().momentum).toBeCloseTo(0.998, 12);
    c.dispose();
  });

  it('trains real steps without leaking tensors', () => {
    const h = harness();
    const { losses, tensorCounts } = h.run(10);
    expect(losses.every((l) => Number.isFinite(l) && l >= 0 && l <= 8)).toBe(true);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    h.dispose();
  });

  it('refuses a temperature and a contrastive loss before anything is built', () => {
    expect(() => harness({}, { loss: { temperature: 0.1 } })).toThrow(
      expect.objectContaining({ code: 'CONTRAST_CONFIG', field: 'loss.temperature' }),
    );
    expect(() => harness({}, { loss: { name: 'infonce' } })).toThrow(
      /'infonce' needs explicit negatives .* but method 'byol' provides a regression target.*use one of: negative-cosine, normalized-mse/s,
    );
  });
});
