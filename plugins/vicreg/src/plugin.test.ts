import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ConfigError, vicregLoss } from '@contrast/core';
import { pluginTestHarness } from '@contrast/trainer';
import { VicReg, vicregPlugin } from './index.js';

const harness = (loss: Record<string, unknown> = {}) => pluginTestHarness(vicregPlugin(), { loss });

describe('vicreg plugin', () => {
  it('has one encoder, no state of its own, the paper weights 25 / 25 / 1', () => {
    const h = harness();
    expect(h.method).toBeInstanceOf(VicReg);
    expect(h.config.loss).toEqual({
      name: 'vicreg',
      symmetric: false,
      invariance: 25,
      variance: 25,
      covariance: 1,
    });
    expect(h.method.state()).toEqual({});
    h.dispose();
  });

  it("the step's loss is vicregLoss of the projections with the loss's weights; the terms are logged", () => {
    const weights = { invariance: 2, variance: 3, covariance: 5 };
    const h = harness(weights);
    const b = h.nextBatch();
    const ctx = { mark: () => undefined, clock: h.clock };
    const got = tf.tidy(() => {
      const out = h.method.objective(b, undefined, ctx);
      const m = out.metrics!;
      return [out.loss, m.invariance_loss!, m.variance_loss!, m.covariance_loss!].map(
        (t) => t.dataSync()[0]!,
      );
    });
    const want = tf.tidy(() => {
      const out = vicregLoss(h.encoder.project(b.x1, true), h.encoder.project(b.x2, true), weights);
      return [out.loss, out.invariance, out.variance, out.covariance].map((t) => t.dataSync()[0]!);
    });
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 3));
    expect(got[0]).toBeCloseTo(2 * got[1]! + 3 * got[2]! + 5 * got[3]!, 3);
    tf.dispose([b.x1, b.x2, b.indices]);
    h.dispose();
  });

  it('refuses a loss of another kind and weights in strategy', () => {
    const build = (strategy: Record<string, unknown>, loss: Record<string, unknown>) => () =>
      pluginTestHarness(vicregPlugin(), { strategy, loss });
    expect(build({}, { name: 'negative-cosine' })).toThrow(ConfigError);
    expect(build({ invariance: 2 }, {})).toThrow(ConfigError);
  });

  it('trains real steps without leaking tensors; the loss falls', () => {
    const h = harness();
    const { losses, tensorCounts } = h.run(10);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[9]!).toBeLessThan(losses[0]!);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    h.dispose();
  });
});
