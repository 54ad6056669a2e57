import type { StepRecord } from './record.js';

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
 *
 * A trajectory's tolerance grows with the drift; the synced comparison has none:
 * every step starts both sides from Contrast's own state before it (weights,
 * momentum buffers, BN buffers, queue or bank), so each of the N steps is held
 * to that one step's float32 noise. It also checks the two state updates in
 * isolation, on Contrast's own inputs: the optimizer step (`update`:
 * torch.optim.SGD on Contrast's gradient and state) and the EMA of the key /
 * target (`ema`), each as one relative difference of the whole update. Their float32
 * noise is the rounding of the float32 weights both sides store, which
 * PyTorch float32 vs float64 measures directly, so they take UPDATE_NOISE_FACTOR.
 */
export const FLOOR = {
  loss: 1e-5,
  gradNorm: 1e-2,
  bn: 1e-4,
  state: 1e-4,
  update: 1e-4,
  ema: 1e-4,
} as const;
export const NOISE_FACTOR = 1000;
/**
 * Synced steps also measure Contrast's own float32 noise: the same step from the
 * same state on the batch in reverse order (the same mathematics, other summation
 * orders in every reduction over the batch). A quantity is within tolerance when it
 * is within SELF_FACTOR x that noise, even where it exceeds the floor, but never
 * by this term beyond SELF_CAP (a 5% change of a gradient norm is never noise).
 */
export const SELF_FACTOR = 10;
export const SELF_CAP = 0.05;
/** The noise factor of the isolated updates (both sides round the same float32 weights). */
export const UPDATE_NOISE_FACTOR = 10;
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

/** The terms of a tolerance: max(floor, factor x PyTorch's noise, capped SELF_FACTOR x Contrast's). */
export type ToleranceTerm = 'floor' | 'pytorch' | 'self';

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
  /** Synced steps: Contrast vs Contrast on the batch in reverse order (0 where not measured). */
  selfNoise: Record<Quantity, number>;
  /** The tolerance each quantity was held to at this step. */
  tolerance: Record<Quantity, number>;
  /** The group with the largest gradient-norm difference. */
  worstGroup: string;
}

export interface MethodComparison {
  steps: StepComparison[];
  /** The first step where a quantity exceeds its tolerance, and which (undefined: none). */
  firstDivergent?: {
    step: number;
    quantity: Quantity;
    diff: number;
    tolerance: number;
    /** Which term set the tolerance: the floor, PyTorch's noise or Contrast's own. */
    by: ToleranceTerm;
  };
  /** The largest relative difference of each quantity over all steps. */
  largest: Record<Quantity, number>;
  /** The largest float32 noise floor of each quantity over all steps. */
  largestNoise: Record<Quantity, number>;
  /** The largest of Contrast's own noise (synced steps). */
  largestSelfNoise: Record<Quantity, number>;
}

/**
 * Relative differences of each quantity of two records. The gradient norms of
 * the parameter groups are compared as one vector (max over groups of the
 * difference, over the largest group norm), so a group whose gradient nearly
 * cancels does not dominate; the group with the largest difference is named.
 */
export function differences(
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
      update: 0,
      ema: 0,
    },
    worst,
  };
}

/**
 * The update differences PyTorch's synced records carry (step.py compares the
 * updates itself, from Contrast's exported states): Contrast vs `torch`, PyTorch
 * float32 vs float64, Contrast vs float64. 0 where a record has no such part.
 */
function updateDifferences(
  torch: StepRecord,
  exact: StepRecord,
): Record<'diff' | 'noise' | 'vsExact', Record<'update' | 'ema', number>> {
  const pick = (r: StepRecord, field: 'contrast' | 'float32') =>
    Object.fromEntries(
      (['update', 'ema'] as const).map((q) => [q, r.updates?.[q]?.[field] ?? 0]),
    ) as Record<'update' | 'ema', number>;
  return {
    diff: pick(torch, 'contrast'),
    noise: pick(exact, 'float32'),
    vsExact: pick(exact, 'contrast'),
  };
}

/**
 * Compares Contrast's records with PyTorch's step by step; `exact` (PyTorch in
 * float64) gives each step's float32 noise floor. Free-running trajectories
 * (default): a step's tolerance follows the largest noise floor so far. With
 * `synced` (PyTorch started every step from Contrast's state): each step's own
 * noise floor, and the parameter updates are compared too.
 */
export function compareSteps(
  ours: StepRecord[],
  torch: StepRecord[],
  exact: StepRecord[],
  options: { synced?: boolean } = {},
): MethodComparison {
  if (ours.length !== torch.length || torch.length !== exact.length) {
    throw new Error(`step counts differ: ${ours.length}, ${torch.length}, ${exact.length}`);
  }
  const zero = () => Object.fromEntries(QUANTITIES.map((q) => [q, 0])) as Record<Quantity, number>;
  const [largest, largestNoise, largestSelfNoise] = [zero(), zero(), zero()];
  let firstDivergent: MethodComparison['firstDivergent'];
  const steps = ours.map((a, step) => {
    const { diff, worst } = differences(a, torch[step]!);
    const noise = differences(torch[step]!, exact[step]!).diff;
    const vsExact = differences(a, exact[step]!).diff;
    if (options.synced) {
      const u = updateDifferences(torch[step]!, exact[step]!);
      Object.assign(diff, u.diff);
      Object.assign(noise, u.noise);
      Object.assign(vsExact, u.vsExact);
    }
    const selfNoise = { ...zero(), ...(options.synced ? a.selfNoise : {}) };
    const tolerance = zero();
    for (const q of QUANTITIES) {
      largest[q] = Math.max(largest[q], diff[q]);
      largestSelfNoise[q] = Math.max(largestSelfNoise[q], selfNoise[q]);
      // trajectories that have drifted apart stay apart: the floor is the largest noise so far
      largestNoise[q] = Math.max(largestNoise[q], noise[q]);
      const floor = options.synced ? noise[q] : largestNoise[q];
      const factor = q === 'update' || q === 'ema' ? UPDATE_NOISE_FACTOR : NOISE_FACTOR;
      const terms = {
        floor: FLOOR[q],
        pytorch: factor * floor,
        self: Math.min(SELF_CAP, SELF_FACTOR * selfNoise[q]),
      };
      const by = (Object.keys(terms) as ToleranceTerm[]).reduce((x, y) =>
        terms[y] > terms[x] ? y : x,
      );
      tolerance[q] = terms[by];
      if (!firstDivergent && !(diff[q] <= tolerance[q])) {
        firstDivergent = { step, quantity: q, diff: diff[q], tolerance: tolerance[q], by };
      }
    }
    return {
      step,
      loss: { ours: a.loss, torch: torch[step]!.loss },
      diff,
      noise,
      vsExact,
      selfNoise,
      tolerance,
      worstGroup: worst,
    };
  });
  return {
    steps,
    largest,
    largestNoise,
    largestSelfNoise,
    ...(firstDivergent ? { firstDivergent } : {}),
  };
}
