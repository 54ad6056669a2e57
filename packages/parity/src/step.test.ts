import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { compareSteps, FLOOR, type Quantity } from './compare.js';
import { readStepFixture } from './fixture.js';
import { PARITY_METHODS, parityPlugins, type ParityMethod } from './methods.js';
import { readNpy } from './npy.js';
import { runContrastSide } from './step.js';

// PyTorch's records of the tiny model, generated once with the tool:
//   pnpm parity step --tiny --fixture packages/parity/src/fixtures/step-tiny.json
// (regenerate after changing TINY_STEP_OPTIONS, a method's settings or its PyTorch port)
const fixture = readStepFixture(
  fileURLToPath(new URL('./fixtures/step-tiny.json', import.meta.url)),
);
const work = mkdtempSync(join(tmpdir(), 'contrast-parity-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ours = (m: ParityMethod) =>
  runContrastSide(m, fixture.options, join(work, m.module), parityPlugins());

/**
 * The first step's loss bound where float32 rounding alone exceeds FLOOR.loss:
 * Barlow Twins' loss sums D^2 products of batch-standardised embeddings, and
 * Contrast's float32 step-1 loss is 1.3e-5 (relative) from float64 by itself
 * (the stored report's "step 1 vs float64"; PyTorch float32's: 4e-7).
 */
const FIRST_STEP_LOSS: Readonly<Record<string, number>> = { 'barlow-twins': 3e-5 };

describe('step parity on a tiny model against stored PyTorch values', () => {
  for (const m of PARITY_METHODS) {
    it(`${m.name}: ${fixture.options.steps} steps within float32 tolerance`, () => {
      const stored = fixture.methods[m.name]!;
      const c = compareSteps(ours(m), stored.torch, stored.torch64);
      expect(c.firstDivergent).toBeUndefined();
      // the first step starts from identical weights and inputs: float32 rounding only
      expect(c.steps[0]!.diff.loss).toBeLessThan(FIRST_STEP_LOSS[m.name] ?? FLOOR.loss);
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
    {
      // centre momentum 1 keeps c at 0: the centre after step 1 differs (0 against 0.1 mean t)
      method: 'dino',
      op: 'no centring of the teacher output',
      change: (s) => ({ ...s, loss: { ...s.loss, centerMomentum: 1 } }),
      step: 0,
      quantity: 'state',
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

describe("the synced comparison's state export", () => {
  // what python/step.py loads before every step: weights, key encoder and SGD
  // momentum buffers must be the same parameters in the same (torch) layout
  it('state-(i+1) = state-i - lr_i * buffer-(i+1); key-(i+1) = m key-i + (1 - m) state-(i+1)', () => {
    const m = PARITY_METHODS.find((x) => x.name === 'momentum-queue')!;
    const dir = join(work, 'sync');
    const o = { ...fixture.options, steps: 2 };
    runContrastSide(m, o, dir, parityPlugins(), { sync: true });
    const { lrs } = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
      lrs: number[];
    };
    const read = (i: number, part: string, name: string) =>
      readNpy(join(dir, `state-00${i}`, part, `${name}.npy`)).data as Float32Array;
    const names = readdirSync(join(dir, 'state-000', 'opt')).map((f) => f.replace(/\.npy$/, ''));
    expect(names).toContain('conv1.weight');
    expect(names.some((n) => n.includes('running'))).toBe(false);
    let worst = 0;
    let moved = 0;
    for (const name of names) {
      expect(Math.max(...read(0, 'opt', name).map(Math.abs))).toBe(0);
      for (const i of [0, 1]) {
        const [w0, w1, buf] = [
          read(i, 'weights', name),
          read(i + 1, 'weights', name),
          read(i + 1, 'opt', name),
        ];
        const [k0, k1] = [read(i, 'key', name), read(i + 1, 'key', name)];
        for (let j = 0; j < w0.length; j++) {
          worst = Math.max(worst, Math.abs(w1[j]! - (w0[j]! - lrs[i]! * buf[j]!)));
          worst = Math.max(worst, Math.abs(k1[j]! - (0.99 * k0[j]! + 0.01 * w1[j]!)));
          moved = Math.max(moved, Math.abs(w1[j]! - w0[j]!));
        }
      }
    }
    expect(moved).toBeGreaterThan(1e-4); // the steps did move the weights
    expect(worst).toBeLessThan(1e-6);
  });

  // the synced comparison's probe runs each step on the reversed batch first and then
  // restores the whole state: the run itself must not change (bank draws included)
  for (const name of ['momentum-queue', 'memory-bank (InfoNCE)']) {
    it(`${name}: the records are the same with and without the self-noise probe`, () => {
      const m = PARITY_METHODS.find((x) => x.name === name)!;
      const plain = runContrastSide(m, fixture.options, join(work, 'plain'), parityPlugins());
      const probed = runContrastSide(m, fixture.options, join(work, 'probed'), parityPlugins(), {
        sync: true,
      });
      probed.forEach((r, i) => {
        const p = plain[i]!;
        expect(r.loss).toBe(p.loss);
        expect(r.gradNorms).toEqual(p.gradNorms);
        expect(r.bn).toEqual(p.bn);
        expect(r.state).toEqual(p.state);
        expect(r.selfNoise!.loss).toBeLessThan(FLOOR.loss);
        expect(r.selfNoise!.gradNorm).toBeLessThan(FLOOR.gradNorm);
      });
      expect(plain[0]!.selfNoise).toBeUndefined();
    });
  }
});
