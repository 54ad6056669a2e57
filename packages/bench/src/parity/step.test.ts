import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { compareSteps, FLOOR } from './compare.js';
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

  it('a 0.5% change in one op (the InfoNCE temperature) diverges at the first step', () => {
    const m = PARITY_METHODS[0]!;
    const perturbed: ParityMethod = {
      ...m,
      settings: (s) => ({ ...m.settings(s), loss: { temperature: 0.1005 } }),
    };
    const c = compareSteps(
      ours(perturbed),
      fixture.methods[m.name]!.torch,
      fixture.methods[m.name]!.torch64,
    );
    expect(c.firstDivergent?.step).toBe(0);
    expect(c.firstDivergent?.quantity).toBe('loss');
  });
});
