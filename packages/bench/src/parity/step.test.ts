import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { compareSteps, FLOOR, type Quantity } from './compare.js';
import { readStepFixture } from './fixture.js';
import { PARITY_METHODS, parityPlugins, type ParityMethod } from './methods.js';
import { runContrastSide } from './step.js';

// PyTorch's records of the tiny model, generated once with the tool:
//   pnpm parity step --tiny --fixture packages/bench/src/parity/fixtures/step-tiny.json
// (regenerate after changing TINY_STEP_OPTIONS, a method's settings or its PyTorch port)
const fixture = readStepFixture(
  fileURLToPath(new URL('./fixtures/step-tiny.json', import.meta.url)),
);
const work = mkdtempSync(join(tmpdir(), 'contrast-parity-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ours = (m: ParityMethod) =>
  runContrastSide(m, fixture.options, join(work, m.module), parityPlugins());

describe('step parity on a tiny model against stored PyTorch values', () => {
  for (const m of PARITY_METHODS) {
    it(`${m.name}: ${fixture.options.steps} steps within float32 tolerance`, () => {
      const stored = fixture.methods[m.name]!;
      const c = compareSteps(ours(m), stored.torch, stored.torch64);
      expect(c.firstDivergent).toBeUndefined();
      // the first step starts from identical weights and inputs: float32 rounding only
      expect(c.steps[0]!.diff.loss).toBeLessThan(FLOOR.loss);
    });
  }

  // one op changed per family: the comparison must fail, at the step the change first acts
  const perturbations: {
    method: string;
    op: string;
    change: (s: ReturnType<ParityMethod['settings']>) => ReturnType<ParityMethod['settings']>;
    step: number;
    quantity?: Quantity;
  }[] = [
    {
      method: 'momentum-queue',
      op: 'a 0.5% change of the InfoNCE temperature',
      change: (s) => ({ ...s, loss: { temperature: 0.1005 } }),
      step: 0,
      quantity: 'loss',
    },
    {
      // the EMA acts after step 1; the target it moved by 1% of one update shows in
      // step 2's loss (2e-4 relative) below that step's tolerance, and in step 3's above it
      method: 'byol',
      op: "the target's EMA rate tau_base 0.99 -> 0.98",
      change: (s) => ({ ...s, strategy: { ...s.strategy!, momentum: 0.98 } }),
      step: 2,
    },
    {
      // the predictor's lr follows the cosine from step 2 on (0.0225, not 0.03): step 3 differs
      method: 'simsiam',
      op: "the predictor's lr on the schedule instead of fixed",
      change: (s) => ({ ...s, strategy: { ...s.strategy!, fixPredictorLr: false } }),
      step: 2,
    },
    {
      method: 'simsiam',
      op: 'no stop-gradient on the target projection',
      change: (s) => ({ ...s, strategy: { ...s.strategy!, stopGradient: false } }),
      step: 0,
    },
  ];
  for (const p of perturbations) {
    it(`${p.method}: ${p.op} diverges at step ${p.step + 1}`, () => {
      const m = PARITY_METHODS.find((x) => x.name === p.method)!;
      const perturbed: ParityMethod = { ...m, settings: (s) => p.change(m.settings(s)) };
      const stored = fixture.methods[m.name]!;
      const c = compareSteps(ours(perturbed), stored.torch, stored.torch64);
      expect(c.firstDivergent?.step).toBe(p.step);
      if (p.quantity) expect(c.firstDivergent?.quantity).toBe(p.quantity);
    });
  }
});
