import { describe, expect, it } from 'vitest';
import { ContrastiveMethod, MomentumKeyEncoder } from '@contrast/core';
import { createCatalog, createStepHarness } from '@contrast/trainer';
import { mocoV3Plugin } from './index.js';

function harness(loss: Record<string, unknown> = {}) {
  const h = createStepHarness(
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
  const parts = (h.method as ContrastiveMethod).parts;
  return { ...h, parts, keyPolicy: parts.keyEncoder as MomentumKeyEncoder };
}

describe('moco-v3 plugin (a composition of shared parts)', () => {
  it('puts a predictor on the query side only; the key encoder follows the encoder', () => {
    const h = harness();
    const predictor = h.parts.predictor!;
    const key = h.keyPolicy.keyEncoder;
    expect(key.parameters().map((p) => p.shape)).toEqual(
      h.encoder.parameters().map((p) => p.shape),
    );
    const trained = h.method.parameterGroups().flatMap((g) => g.params);
    expect(trained.length).toBe(h.encoder.parameters().length + 6); // fc1 w/b, bn gamma/beta, fc2 w/b
    expect(predictor.namedVariables().size).toBe(8); // + BN running statistics
    expect(Object.keys(h.method.state())).toContain('predictor');
    expect(h.parts.loss.name).toBe('infonce-batch');
    expect(h.config.loss).toMatchObject({ name: 'infonce-batch', symmetric: true });
    h.dispose();
  });

  it('defaults to the two-way loss; a one-way run is an explicit choice', () => {
    for (const [loss, symmetric] of [
      [{}, true],
      [{ symmetric: false }, false],
    ] as const) {
      const h = harness(loss);
      expect(h.parts.symmetric).toBe(symmetric);
      h.dispose();
    }
  });

  it('trains real steps: loss falls, the predictor learns, the key encoder is the EMA of the encoder, no leak', () => {
    const h = harness();
    const key = h.keyPolicy.keyEncoder;
    const predictorBefore = h.parts
      .predictor!.parameters()
      .map((p) => Float32Array.from(p.dataSync()));
    h.clock.total = 30;
    const { losses, tensorCounts } = h.run(30);
    expect(losses.every(Number.isFinite)).toBe(true);
    // 2 directions x 2t * log(N) = 0.8 * log(32) = 2.77 at chance; learning brings it down
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(-5))).toBeLessThan(mean(losses.slice(0, 5)));
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    const predictorAfter = h.parts.predictor!.parameters().map((p) => p.dataSync());
    expect(predictorAfter.some((a, i) => a.some((v, j) => v !== predictorBefore[i]![j]))).toBe(
      true,
    );
    // one more EMA update by hand: key <- m key + (1 - m) encoder, with the clock's momentum
    const m = h.keyPolicy.currentMomentum;
    expect(m).toBeGreaterThan(0.99);
    const k0 = key.parameters()[0]!.dataSync().slice();
    const b0 = h.encoder.parameters()[0]!.dataSync();
    h.keyPolicy.afterStep();
    const k1 = key.parameters()[0]!.dataSync();
    for (const j of [0, 5, 17]) expect(k1[j]).toBeCloseTo(m * k0[j]! + (1 - m) * b0[j]!, 6);
    h.dispose();
  });
});
