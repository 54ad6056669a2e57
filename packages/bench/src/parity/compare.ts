import type { StepRecord } from './step.js';

/**
 * When two float32 implementations of the same step "agree to float32
 * tolerance". Their kernels sum in different orders, and a training trajectory
 * amplifies such rounding differences step after step (early MoCo steps are
 * ill-conditioned: freshly initialised encoders map every image to nearly the
 * same embedding, so the logits are differences of cosines near 1). The float32
 * noise floor of a step is therefore measured, not assumed: PyTorch runs the
 * same steps again in float64 from the same float32 inputs, and the largest
 * distance between its float32 and float64 trajectories up to a step is what
 * float32 rounding alone does by then. A quantity is beyond tolerance when
 * Contrast differs from PyTorch by more than max(FLOOR, NOISE_FACTOR x that
 * distance). NOISE_FACTOR is 1000 because PyTorch's CPU BatchNorm accumulates
 * its reductions in float64 while TensorFlow's fused kernels accumulate in
 * float32: measured on a fresh ResNet-18, the batch variance is 5e-5 relative off
 * (PyTorch: 1e-7) and the first step's gradient norms 3e-4..6e-3 against float64
 * (PyTorch: 1e-6..1e-4), 30-300x PyTorch's own float32 error. Gradient norms get
 * a floor of 1e-2 for the same reason. So the comparison discriminates most in
 * the first steps, where the noise floor is smallest: a changed op shows there.
 */
export const FLOOR = {
  loss: 1e-5,
  gradNorm: 1e-2,
  bn: 1e-4,
  state: 1e-4,
} as const;
export const NOISE_FACTOR = 1000;
export type Quantity = keyof typeof FLOOR;
const QUANTITIES = Object.keys(FLOOR) as Quantity[];

/** max_i |a_i - b_i| / max_i |b_i| (0 when both are all zero). */
export function relativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length)
    throw new Error(`compared arrays differ in length: ${a.length} vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}

/** Per step, the relative difference of each compared quantity. */
export interface StepComparison {
  step: number;
  loss: { ours: number; torch: number };
  /** Contrast vs PyTorch. */
  diff: Record<Quantity, number>;
  /** PyTorch float32 vs PyTorch float64: the float32 noise floor of this step. */
  noise: Record<Quantity, number>;
  /** Contrast vs PyTorch float64. */
  vsExact: Record<Quantity, number>;
  /** The group with the largest gradient-norm difference. */
  worstGroup: string;
}

export interface MethodComparison {
  steps: StepComparison[];
  /** The first step where a quantity exceeds its tolerance, and which (undefined: none). */
  firstDivergent?: { step: number; quantity: Quantity; diff: number; tolerance: number };
  /** The largest relative difference of each quantity over all steps. */
  largest: Record<Quantity, number>;
  /** The largest float32 noise floor of each quantity over all steps. */
  largestNoise: Record<Quantity, number>;
}

/**
 * Relative differences of each quantity of two records. The gradient norms of
 * the parameter groups are compared as one vector (max over groups of the
 * difference, over the largest group norm), so a group whose gradient nearly
 * cancels does not dominate; the group with the largest difference is named.
 */
function differences(
  a: StepRecord,
  b: StepRecord,
): { diff: Record<Quantity, number>; worst: string } {
  const groups = Object.keys(b.gradNorms);
  const ours = groups.map((g) => a.gradNorms[g] ?? Number.NaN);
  const theirs = groups.map((g) => b.gradNorms[g]!);
  const gaps = groups.map((_, i) => Math.abs(ours[i]! - theirs[i]!));
  const worst = groups[gaps.indexOf(Math.max(...gaps))] ?? '-';
  return {
    diff: {
      loss: relativeDifference([a.loss], [b.loss]),
      gradNorm: relativeDifference(ours, theirs),
      bn: relativeDifference(a.bn, b.bn),
      state: a.state && b.state ? relativeDifference(a.state, b.state) : 0,
    },
    worst,
  };
}

/**
 * Compares Contrast's records with PyTorch's step by step; `exact` (PyTorch in
 * float64) gives each step's float32 noise floor.
 */
export function compareSteps(
  ours: StepRecord[],
  torch: StepRecord[],
  exact: StepRecord[],
): MethodComparison {
  if (ours.length !== torch.length || torch.length !== exact.length) {
    throw new Error(`step counts differ: ${ours.length}, ${torch.length}, ${exact.length}`);
  }
  const zero = () => Object.fromEntries(QUANTITIES.map((q) => [q, 0])) as Record<Quantity, number>;
  const [largest, largestNoise] = [zero(), zero()];
  let firstDivergent: MethodComparison['firstDivergent'];
  const steps = ours.map((a, step) => {
    const { diff, worst } = differences(a, torch[step]!);
    const noise = differences(torch[step]!, exact[step]!).diff;
    for (const q of QUANTITIES) {
      largest[q] = Math.max(largest[q], diff[q]);
      // trajectories that have drifted apart stay apart: the floor is the largest noise so far
      largestNoise[q] = Math.max(largestNoise[q], noise[q]);
      const tolerance = Math.max(FLOOR[q], NOISE_FACTOR * largestNoise[q]);
      if (!firstDivergent && !(diff[q] <= tolerance)) {
        firstDivergent = { step, quantity: q, diff: diff[q], tolerance };
      }
    }
    return {
      step,
      loss: { ours: a.loss, torch: torch[step]!.loss },
      diff,
      noise,
      vsExact: differences(a, exact[step]!).diff,
      worstGroup: worst,
    };
  });
  return { steps, largest, largestNoise, ...(firstDivergent ? { firstDivergent } : {}) };
}
