import { describe, expect, it } from 'vitest';
import { MomentumKeyEncoder } from '@contrast/core';
import { PredictorEncoder } from '@contrast/models';
import { createCatalog, createStepHarness } from '@contrast/trainer';
import { mocoV3Plugin } from './index.js';

function harness(loss: Record<string, unknown> = { symmetric: true }) {
  return createStepHarness(
    {
      name: 'v3-test',
      data: { trainSubset: 512 },
      model: { encoder: 'convnet', width: 0.25, dim: 16, head: 'mlp' },
      strategy: { name: 'moco-v3', momentum: 0.99, predictorHidden: 32 },
      loss: { temperature: 0.2, ...loss },
      optim: { batchSize: 32, lr: 0.3, optimizer: 'lars', weightDecay: 1e-6 },
    },
    createCatalog([mocoV3Plugin()]),
  );
}

describe('moco-v3 plugin (a composition of shared parts)', () => {
  it('puts a predictor on the query side only; the key encoder follows the base encoder', () => {
    const h = harness();
    expect(h.encoder).toBeInstanceOf(PredictorEncoder);
    const base = (h.encoder as PredictorEncoder).base;
    const key = (h.keyPolicy as MomentumKeyEncoder).keyEncoder;
    expect(key.parameters().map((p) => p.shape)).toEqual(base.parameters().map((p) => p.shape));
    expect(h.encoder.parameters().length).toBe(base.parameters().length + 6); // fc1 w/b, bn gamma/beta, fc2 w/b
    expect(
      [...h.encoder.namedVariables().keys()].filter((k) => k.startsWith('predictor/')),
    ).toHaveLength(8);
    expect(h.parts.loss.name).toBe('infonce-batch');
    h.dispose();
  });

  it('refuses to run without the symmetric loss', () => {
    expect(() => harness({ symmetric: false })).toThrow(/loss.symmetric/);
  });

  it('trains real steps: loss falls, the predictor learns, the key encoder is the EMA of the base, no leak', () => {
    const h = harness();
    const base = (h.encoder as PredictorEncoder).base;
    const key = (h.keyPolicy as MomentumKeyEncoder).keyEncoder;
    const predictorBefore = h.encoder
      .parameters()
      .slice(-6)
      .map((p) => Float32Array.from(p.dataSync()));
    h.clock.total = 30;
    const { losses, tensorCounts } = h.run(30);
    expect(losses.every(Number.isFinite)).toBe(true);
    // 2t * log(N) = 0.4 * log(32) = 1.39 at chance; learning brings it down
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(-5))).toBeLessThan(mean(losses.slice(0, 5)));
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    const predictorAfter = h.encoder
      .parameters()
      .slice(-6)
      .map((p) => p.dataSync());
    expect(predictorAfter.some((a, i) => a.some((v, j) => v !== predictorBefore[i]![j]))).toBe(
      true,
    );
    // one more EMA update by hand: key <- m key + (1 - m) base, with the clock's momentum
    const m = h.keyPolicy.currentMomentum!;
    expect(m).toBeGreaterThan(0.99);
    const k0 = key.parameters()[0]!.dataSync().slice();
    const b0 = base.parameters()[0]!.dataSync();
    h.keyPolicy.afterStep();
    const k1 = key.parameters()[0]!.dataSync();
    for (const j of [0, 5, 17]) expect(k1[j]).toBeCloseTo(m * k0[j]! + (1 - m) * b0[j]!, 6);
    h.dispose();
  });
});
