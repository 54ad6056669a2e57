import * as tf from '@tensorflow/tfjs';
import {
  ConfigError,
  parameterTags,
  type ExperimentConfig,
  type GroupOptions,
  type Optimizer,
  type ParameterGroup,
  type ParameterStep,
} from '@contrast/core';
import { gradientOf, scheduledWeightDecay } from './sgd.js';

/** One parameter's options, resolved from every source. */
export interface ParameterOptions {
  fixedLr: boolean;
  lrScale: number;
  decay: boolean;
  /** The first step at which it is updated (0: from the start; Infinity: never). */
  frozenUntil: number;
}

/** The `optim` settings the plan reads. */
export type PlanSettings = Pick<
  ExperimentConfig['optim'],
  'decay' | 'groups' | 'weightDecay' | 'weightDecayEnd' | 'clipGradNorm' | 'clipMode'
>;

/** The first step a `frozen` option lets through. */
function frozenUntil(frozen: GroupOptions['frozen'], stepsPerEpoch: number): number {
  if (frozen === undefined || frozen === false) return 0;
  if (frozen === true) return Infinity;
  return 'steps' in frozen ? frozen.steps : Math.round(frozen.epochs * stepsPerEpoch);
}

/** An `optim.groups` rule as group options (only the fields it sets). */
function ruleOptions(rule: PlanSettings['groups'][number]): GroupOptions {
  const o: GroupOptions = {};
  if (rule.lrScale !== undefined) o.lrScale = rule.lrScale;
  if (rule.fixedLr !== undefined) o.fixedLr = rule.fixedLr;
  if (rule.decay !== undefined) o.decay = rule.decay;
  if (rule.frozenSteps !== undefined) o.frozen = { steps: rule.frozenSteps };
  if (rule.frozenEpochs !== undefined) o.frozen = { epochs: rule.frozenEpochs };
  if (rule.frozen !== undefined) o.frozen = rule.frozen;
  return o;
}

/**
 * Every parameter's options, in the groups' order. Sources, the later winning
 * field by field: `optim.decay` ('no-norm-bias': no decay for rank <= 1, the
 * biases and norms' gamma / beta, as DINO's get_params_groups and timm's
 * param_groups_weight_decay), the variable's tags (`tagParameters`, set by an
 * encoder), the method's group, then each `optim.groups` rule whose `match`
 * finds the parameter's checkpoint name.
 */
export function resolveParameterOptions(
  groups: readonly ParameterGroup[],
  optim: Pick<PlanSettings, 'decay' | 'groups'>,
  stepsPerEpoch: number,
  nameOf: (v: tf.Variable) => string = (v) => v.name,
): ParameterOptions[] {
  const rules = optim.groups.map((r) => ({ match: new RegExp(r.match), options: ruleOptions(r) }));
  const names = groups.flatMap(({ params }) => params.map(nameOf));
  rules.forEach((r, i) => {
    if (!names.some((n) => r.match.test(n))) throw unmatchedRule(i, optim.groups[i]!.match, names);
  });
  return groups.flatMap(({ params, ...group }) =>
    params.map((p) => {
      let o: GroupOptions = { decay: optim.decay === 'all' || p.rank > 1 };
      o = { ...o, ...parameterTags(p), ...definedOnly(group) };
      const name = nameOf(p);
      for (const r of rules) if (r.match.test(name)) o = { ...o, ...r.options };
      return {
        fixedLr: o.fixedLr ?? false,
        lrScale: o.lrScale ?? 1,
        decay: o.decay ?? true,
        frozenUntil: frozenUntil(o.frozen, stepsPerEpoch),
      };
    }),
  );
}

/** A rule whose `match` finds no trained parameter: a misspelling, or a rule for another model. */
function unmatchedRule(i: number, match: string, names: readonly string[]): ConfigError {
  const prefixes = [...new Set(names.map((n) => n.split('/').slice(0, 2).join('/')))];
  return new ConfigError(
    `optim.groups[${i}].match`,
    `'${match}' matches none of the model's trained parameters`,
    {
      hint: `match a part of their checkpoint names (e.g. ${prefixes.slice(0, 6).join(', ')}), or remove the rule for this model (optim.groups: [])`,
    },
  );
}

const definedOnly = (o: GroupOptions): GroupOptions =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as GroupOptions;

/**
 * The per-group options of an experiment, applied in one place for every
 * optimizer: at each step, after the data-parallel all-reduce (as DDP), the
 * gradients are clipped, then each parameter gets its lr (scheduled or base,
 * times its scale), its weight decay (scheduled, or 0) or nothing (frozen).
 */
export class ParameterPlan {
  readonly options: readonly ParameterOptions[];

  constructor(
    groups: readonly ParameterGroup[],
    private readonly optim: PlanSettings,
    stepsPerEpoch: number,
    nameOf?: (v: tf.Variable) => string,
  ) {
    this.options = resolveParameterOptions(groups, optim, stepsPerEpoch, nameOf);
  }

  /** Each parameter's hyperparameters at `step` of `total`; null for a frozen one. */
  steps(step: number, total: number, lr: number, baseLr: number): (ParameterStep | null)[] {
    const wd = scheduledWeightDecay(this.optim, step, total);
    return this.options.map((o) =>
      step < o.frozenUntil
        ? null
        : { lr: (o.fixedLr ? baseLr : lr) * o.lrScale, weightDecay: o.decay ? wd : 0 },
    );
  }

  /**
   * One optimizer step: clip, then update the parameters not frozen at `step`.
   * Call inside a tf.tidy (the clipped gradients are intermediates).
   */
  apply(
    optimizer: Optimizer,
    params: readonly tf.Variable[],
    grads: tf.NamedTensorMap,
    at: { step: number; total: number; lr: number; baseLr: number },
  ): void {
    const steps = this.steps(at.step, at.total, at.lr, at.baseLr);
    const { clipGradNorm, clipMode } = this.optim;
    const clipped =
      clipGradNorm > 0 ? clipGradients(grads, params, steps, clipGradNorm, clipMode) : grads;
    optimizer.apply(clipped, steps);
  }
}

/**
 * Gradients clipped by L2 norm, over the parameters updated at this step
 * (`steps[i]` not null; a frozen parameter's gradient is left out, as a
 * PyTorch parameter without .grad is):
 * - 'global': torch.nn.utils.clip_grad_norm_: total = ||(||g_1||, ..., ||g_n||)||,
 *   every g scaled by min(1, maxNorm / (total + 1e-6));
 * - 'per-parameter': DINO's utils.clip_gradients: each g scaled by
 *   maxNorm / (||g|| + 1e-6) when that is below 1.
 * No host read: the scale stays on the device.
 */
export function clipGradients(
  grads: tf.NamedTensorMap,
  params: readonly tf.Variable[],
  steps: readonly (ParameterStep | null)[],
  maxNorm: number,
  mode: 'global' | 'per-parameter',
): tf.NamedTensorMap {
  const active = params.filter((_, i) => steps[i] !== null);
  const out: tf.NamedTensorMap = { ...grads };
  if (active.length === 0) return out;
  const norms = active.map((p) => tf.norm(gradientOf(grads, p)));
  const scale = (norm: tf.Tensor) => tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1);
  if (mode === 'global') {
    const s = scale(tf.norm(tf.stack(norms)));
    for (const p of active) out[p.name] = tf.mul(gradientOf(grads, p), s);
  } else {
    active.forEach((p, i) => (out[p.name] = tf.mul(gradientOf(grads, p), scale(norms[i]!))));
  }
  return out;
}
