import type * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { parseWith } from './config.js';
import { ConfigError } from './errors.js';
import type { StateTensors } from './contracts.js';
import { nearest, type Registry } from './registry.js';
import { OptimSchema, type ExperimentConfig } from './schema.js';

/**
 * One parameter's hyperparameters at one step, as the step computes them from
 * the schedules and the parameter's group options (packages/trainer/src/groups.ts).
 */
export interface ParameterStep {
  /** The learning rate: scheduled (or base, for `fixedLr`) times the group's `lrScale`. */
  lr: number;
  /** The weight decay coefficient (0 for a no-decay parameter), scheduled when `optim.weightDecayEnd` is set. */
  weightDecay: number;
}

/**
 * What the step needs of an optimizer. It is built over a fixed, ordered list
 * of parameters; its slots (momentum buffers, Adam moments, step counts) are
 * part of a checkpoint.
 */
export interface Optimizer {
  /**
   * Updates `params[i]` with `grads[params[i].name]` (as tf.variableGrads returns
   * them) for every i whose `steps[i]` is given. A parameter whose entry is
   * `null` is frozen at this step: neither it nor its optimizer state changes
   * (as PyTorch skips a parameter whose `.grad` is None).
   */
  apply(grads: tf.NamedTensorMap, steps: readonly (ParameterStep | null)[]): void;
  state(): StateTensors;
  /** @throws StateError when a slot is missing or mis-shaped. */
  loadState(state: StateTensors): void;
  dispose(): void;
}

/**
 * A named optimizer of the registry (`optim.optimizer: <name>`): its own options
 * (the `optim` fields besides the shared ones: `momentum` for sgd, `betas` and
 * `eps` for adamw), validated by a strict zod schema as a strategy's are, and a
 * factory over the parameters. Register one from a plugin with `Plugin.optimizers`.
 */
export interface OptimizerEntry<O = unknown> {
  readonly description: string;
  /** A strict zod object of the optimizer's own `optim` fields, with the papers' defaults. */
  readonly optionsSchema: z.ZodType<O, z.ZodTypeDef, unknown>;
  create(params: readonly tf.Variable[], options: O): Optimizer;
}

/** Identity with the options type inferred from the schema. */
export function defineOptimizer<O>(entry: OptimizerEntry<O>): OptimizerEntry<O> {
  return entry;
}

/** Builds the experiment's optimizer over the method's parameters (`Tokens.OptimizerFactory`). */
export type OptimizerFactory = (params: readonly tf.Variable[]) => Optimizer;

/**
 * How the optimizer treats a group of parameters. A method declares them on its
 * `ParameterGroup`s, an encoder on single variables (`tagParameters`), a user
 * in `optim.groups` by name; the step applies them in one place.
 */
export interface GroupOptions {
  /** Train at the base (unscheduled) lr: SimSiam's predictor. */
  fixedLr?: boolean;
  /** Multiplies the group's lr (1). */
  lrScale?: number;
  /** Whether weight decay applies (default: `optim.decay`'s rule). */
  decay?: boolean;
  /**
   * No update, and the optimizer's state untouched, for the first `steps` or
   * `epochs` of the run (SwAV's prototypes and DINO's last layer: 1 epoch), or
   * for the whole run with `true` (MoCo v3's random patch projection); `false`
   * undoes a freeze set by an earlier source.
   */
  frozen?: boolean | { steps: number } | { epochs: number };
}

const tags = new WeakMap<tf.Variable, GroupOptions>();

/**
 * Marks variables with group options where they are made (an encoder's patch
 * projection frozen, its norms without decay), so that any method training
 * them applies them. A method's group options and `optim.groups` rules are
 * applied on top (in that order, the later winning field by field).
 */
export function tagParameters(vars: Iterable<tf.Variable>, options: GroupOptions): void {
  for (const v of vars) tags.set(v, { ...tags.get(v), ...options });
}

/** The options `tagParameters` set on `v` (empty when none). */
export function parameterTags(v: tf.Variable): GroupOptions {
  return tags.get(v) ?? {};
}

/** The `optim` fields every optimizer shares (the rest belong to `optim.optimizer`). */
export const OPTIM_FIELDS: readonly string[] = Object.keys(OptimSchema.shape);

/**
 * Fills `optim` with the selected optimizer's options (its defaults) and checks
 * them, as the strategy section is checked by its plugin.
 * @throws UnknownNameError for an unknown `optim.optimizer` (with the known names).
 * @throws ConfigError naming the `optim.<field>` that is wrong or unknown (with the nearest known field).
 */
export function resolveOptimizer(
  config: ExperimentConfig,
  optimizers: Registry<OptimizerEntry>,
): { config: ExperimentConfig; entry: OptimizerEntry; options: unknown } {
  const name = config.optim.optimizer;
  const entry = optimizers.get(name);
  const own = Object.fromEntries(
    Object.entries(config.optim).filter(([k]) => !OPTIM_FIELDS.includes(k)),
  );
  const shape = fieldsOf(entry);
  for (const key of Object.keys(own)) {
    if (shape.includes(key)) continue;
    const known = [...OPTIM_FIELDS, ...shape];
    const near = nearest(key, known);
    const owners = optimizers
      .names()
      .filter((n) => n !== name && fieldsOf(optimizers.get(n)).includes(key));
    throw new ConfigError(
      `optim.${key}`,
      owners.length
        ? `is an option of optimizer ${owners.join(', ')}, not of '${name}'`
        : 'is not a known field',
      {
        hint: owners.length
          ? `remove it, or set optim.optimizer: ${owners[0]}`
          : `${near ? `did you mean '${near}'? ` : ''}known here: ${known.join(', ')}`,
      },
    );
  }
  const options = parseWith(entry.optionsSchema, own, 'optim');
  return {
    config: { ...config, optim: { ...config.optim, ...(options as object) } },
    entry,
    options,
  };
}

/** The fields an optimizer's options schema declares (none when it is not a zod object). */
function fieldsOf(entry: OptimizerEntry): string[] {
  return entry.optionsSchema instanceof z.ZodObject ? Object.keys(entry.optionsSchema.shape) : [];
}
