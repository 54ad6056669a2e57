import { describe, expect, it } from 'vitest';
import { OPTIM_CASES, optimDiffs, optimProblem, runContrastOptim, runTorchOptim } from './optim.js';

// Runs PyTorch live in the cached torch venv (python/optim.py; a few seconds).
describe('the optimizer step against torch.optim (AdamW, SGD) with clipping and groups', () => {
  for (const [optimizer, clip] of OPTIM_CASES) {
    it(`${optimizer}, ${clip} clipping, scheduled lr and wd, no-norm-bias, a frozen group: within 1e-6`, () => {
      const p = optimProblem(clip, optimizer);
      const ours = runContrastOptim(p);
      // the problem exercises what it claims: the frozen group starts at step 2
      expect(ours.steps.map((s) => s[2] === null)).toEqual([true, true, false, false, false]);
      expect(ours.steps[0]![1]!.weightDecay).toBe(0); // rank 1: no decay
      const torch = runTorchOptim(p, ours.steps);
      const diffs = optimDiffs(ours.trajectory, torch);
      expect(Math.max(...diffs)).toBeLessThan(1e-6);
      expect(ours.trajectory[1]![2]).toEqual(p.params[2]!.values.map((v) => Math.fround(v)));
    });
  }
});
