import { describe, expect, it } from 'vitest';
import {
  compareSteps,
  FLOOR,
  relativeDifference,
  SELF_CAP,
  SELF_FACTOR,
  UPDATE_NOISE_FACTOR,
} from './compare.js';
import type { StepRecord } from './record.js';

const record = (loss: number, extra: Partial<StepRecord> = {}): StepRecord => ({
  loss,
  gradNorms: { stem: 1 },
  bn: Float32Array.of(1),
  ...extra,
});

describe('relativeDifference', () => {
  it('is max |a - b| over max |b|', () => {
    // max |a - b| = 0.5 (second entry), max |b| = 4
    expect(relativeDifference([1, 2.5, -4], [1, 2, -4])).toBeCloseTo(0.125, 12);
    expect(relativeDifference([0, 0], [0, 0])).toBe(0);
    expect(relativeDifference([1e-3], [0])).toBe(1e-3);
    expect(() => relativeDifference([1], [1, 2])).toThrow(/differ in length/);
  });
});

describe('compareSteps', () => {
  // PyTorch float32 is 1e-6 off float64 at step 1, exact afterwards; Contrast is 5e-4
  // off PyTorch at step 2: within 1000 x the largest noise so far (1e-3), beyond
  // 1000 x step 2's own noise (0) and beyond the loss floor (1e-5)
  const ours = [record(1), record(1.0005)];
  const torch = [record(1), record(1)];
  const exact = [record(1 + 1e-6), record(1)];

  it('a free-running trajectory keeps the largest noise floor so far', () => {
    const c = compareSteps(ours, torch, exact);
    expect(c.firstDivergent).toBeUndefined();
    expect(c.largest.loss).toBeCloseTo(5e-4, 10);
    expect(c.largestNoise.loss).toBeCloseTo(1e-6 / (1 + 1e-6), 12);
  });

  it("a synced step is held to its own step's noise floor", () => {
    const c = compareSteps(ours, torch, exact, { synced: true });
    expect(c.firstDivergent).toMatchObject({ step: 1, quantity: 'loss', tolerance: FLOOR.loss });
    expect(c.firstDivergent!.diff).toBeCloseTo(5e-4, 10);
  });

  it("synced: the updates are PyTorch's own comparisons with Contrast's, held to their floor", () => {
    const noise = 2e-6;
    const updates = (contrast: number, float32?: number) => ({
      update: { contrast, ...(float32 === undefined ? {} : { float32 }) },
      ema: { contrast: contrast / 2, ...(float32 === undefined ? {} : { float32 }) },
    });
    const t = [record(1, { updates: updates(5e-5) }), record(1, { updates: updates(0.05) })];
    const x = [
      record(1, { updates: updates(5e-5, noise) }),
      record(1, { updates: updates(0.05, noise) }),
    ];
    const c = compareSteps([record(1), record(1)], t, x, { synced: true });
    expect(c.steps[0]!.diff.update).toBe(5e-5);
    expect(c.steps[0]!.diff.ema).toBe(2.5e-5);
    expect(c.steps[0]!.noise.update).toBe(noise);
    expect(c.steps[0]!.vsExact.update).toBe(5e-5);
    // step 2: 0.05 > max(1e-4, 10 x 2e-6)
    expect(c.firstDivergent).toMatchObject({
      step: 1,
      quantity: 'update',
      tolerance: Math.max(FLOOR.update, UPDATE_NOISE_FACTOR * noise),
    });
    // free-running records carry no updates: those quantities stay 0
    expect(compareSteps([record(1)], [t[0]!], [x[0]!]).largest.update).toBe(0);
  });

  it("synced: Contrast's own noise (the batch reversed) raises a step's tolerance", () => {
    const grads = (stem: number) => ({ gradNorms: { stem, layer1: 2 } });
    const selfNoise = (gradNorm: number) => ({ loss: 0, gradNorm, bn: 0 });
    // Contrast's stem gradient norm is 0.06 off PyTorch's: 0.03 relative to the largest group
    const torch = [record(1, grads(1))];
    const c = (own: number) =>
      compareSteps([record(1, { ...grads(1.06), selfNoise: selfNoise(own) })], torch, torch, {
        synced: true,
      });
    expect(c(0.005).firstDivergent).toBeUndefined(); // 0.03 <= 10 x 0.005
    expect(c(0.005).largestSelfNoise.gradNorm).toBe(0.005);
    expect(c(0.001).firstDivergent).toMatchObject({
      quantity: 'gradNorm',
      tolerance: FLOOR.gradNorm,
    });
    expect(c(0.001).firstDivergent!.diff).toBeCloseTo(0.03, 12);
    expect(c(0.001).firstDivergent!.by).toBe('floor');
    // however noisy Contrast's own step, its term stops at SELF_CAP: 0.06 > min(0.05, 10 x 0.02)
    const far = compareSteps(
      [record(1, { ...grads(1.12), selfNoise: selfNoise(0.02) })],
      torch,
      torch,
      { synced: true },
    );
    expect(far.firstDivergent).toMatchObject({
      quantity: 'gradNorm',
      tolerance: SELF_CAP,
      by: 'self',
    });
    expect(far.steps[0]!.tolerance.gradNorm).toBe(SELF_CAP);
    expect(SELF_FACTOR * 0.005).toBeGreaterThan(0.03);
    // a free-running comparison ignores it
    const free = compareSteps(
      [record(1, { ...grads(1.06), selfNoise: selfNoise(0.005) })],
      torch,
      torch,
    );
    expect(free.firstDivergent?.quantity).toBe('gradNorm');
  });
});
