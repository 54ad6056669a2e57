import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { barlowTwinsLoss, ConfigError } from '@contrast/core';
import { pluginTestHarness } from '@contrast/trainer';
import { BarlowTwins, barlowTwinsPlugin } from './index.js';

const harness = (loss: Record<string, unknown> = {}) =>
  pluginTestHarness(barlowTwinsPlugin(), { loss });

describe('barlow-twins plugin', () => {
  it('has one encoder, no predictor, no state of its own, its own loss with the paper lambda', () => {
    const h = harness();
    expect(h.method).toBeInstanceOf(BarlowTwins);
    expect(h.config.loss).toEqual({
      name: 'barlow-twins',
      symmetric: false,
      lambda: 0.0051,
      scaleLoss: 1,
    });
    expect(h.method.state()).toEqual({});
    expect(h.method.parameterGroups()).toEqual([{ params: h.encoder.parameters() }]);
    h.dispose();
  });

  it("the step's loss is barlowTwinsLoss of the two views' projections, with the loss's lambda", () => {
    const h = harness({ lambda: 0.3, scaleLoss: 2 });
    const b = h.nextBatch();
    const ctx = { mark: () => undefined, clock: h.clock };
    const got = tf.tidy(() => h.method.objective(b, undefined, ctx).loss.dataSync()[0]!);
    const want = tf.tidy(() => {
      const z1 = h.encoder.project(b.x1, true);
      const z2 = h.encoder.project(b.x2, true);
      return barlowTwinsLoss(z1, z2, { lambda: 0.3, scale: 2 }).dataSync()[0]!;
    });
    expect(got).toBeCloseTo(want, 3);
    tf.dispose([b.x1, b.x2, b.indices]);
    h.dispose();
  });

  it('refuses a loss of another kind, a lambda in strategy, and a misspelt loss option', () => {
    const build = (strategy: Record<string, unknown>, loss: Record<string, unknown>) => () =>
      pluginTestHarness(barlowTwinsPlugin(), { strategy, loss });
    expect(build({}, { name: 'normalized-mse' })).toThrow(ConfigError);
    expect(build({ lambda: 0.3 }, {})).toThrow(ConfigError);
    expect(build({}, { lamda: 0.3 })).toThrow(/lambda/);
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
