import * as tf from '@tensorflow/tfjs';
import type {
  Encoder,
  Head,
  StateTensors,
  Stateful,
  TrainingClock,
  ViewGroup,
} from './contracts.js';
import { ConfigError, ContractError, StateError } from './errors.js';
import { l2Normalize } from './math.js';
import type { GroupOptions } from './optim.js';

/**
 * The method contract (docs/design.md, "one training step"): every self-supervised
 * family — contrastive with a queue, a bank or the batch; with a momentum, shared,
 * stop-gradient or no key encoder; predictor / stop-gradient methods without
 * negatives — is one `Method`. The trainer owns the tape, the optimizer over
 * `parameters()`, the tidy and the phase marks; the method owns what happens
 * before the tape (`prepare`), inside it (`objective`) and after the optimizer
 * step (`afterStep`):
 *
 *   before = method.prepare(views)                // no gradient: momentum keys, targets
 *   grads  = tape(() => method.objective(views, before).loss, method.parameters())
 *   optimizer.apply(grads)
 *   method.afterStep({ views, before, carry })    // enqueue, bank write, EMA
 *
 * Shapes: N = batch, H x W x C = view size, D = embedding width.
 */

/**
 * The augmented crops of a batch, and the samples' dataset indices. The default
 * experiment has two crops (the two views, x1 and x2); multi-crop experiments
 * (SwAV, DINO) have more, in groups of their own size.
 */
export interface Views {
  /** [N, H, W, C] the first view (MoCo's query view): crops[0]. */
  x1: tf.Tensor4D;
  /** [N, H, W, C] the second view (MoCo's key view): crops[1]. */
  x2: tf.Tensor4D;
  /** Every crop, in group order: [N, h_g, w_g, C] each, h_g x w_g the size of its group. */
  crops: readonly tf.Tensor4D[];
  /** The crop groups, in order (one 'global' group of 2 crops by default). */
  groups: readonly ViewGroup[];
  /** [N] int32 dataset indices of the samples. */
  indices: tf.Tensor1D;
  /** The same indices on the host (for sampling without a device read). */
  indexArray: Int32Array;
  /**
   * Data-parallel: this worker's rows are `start` .. start + N of the global
   * batch, whose sample indices (every worker's, in rank order) are
   * `batchIndexArray`. Absent on one process (the views are the whole batch).
   */
  part?: { start: number; batchIndexArray: Int32Array };
}

/**
 * The crops of the group named `name` ([N, h, w, C] each, in order).
 * @throws ConfigError (data.views) when the experiment declares no such group.
 */
export function groupCrops(views: Pick<Views, 'crops' | 'groups'>, name: string): tf.Tensor4D[] {
  const group = views.groups.find((g) => g.name === name);
  if (!group) {
    const known = views.groups.map((g) => g.name);
    throw new ConfigError(
      'data.views',
      `the method reads crop group '${name}'; groups: ${known.join(', ')}`,
      {
        hint: `add a group { name: ${name}, count: ... } to data.views`,
      },
    );
  }
  return views.crops.slice(group.start, group.start + group.count);
}

/**
 * `net` on the rows of every tensor of `parts` ([N, ...] each, the same N) as one
 * batch, laid out for S BatchNorm groups (`bnGroups`): BN group s holds slice s of
 * every part (SplitBN cuts its input into S contiguous chunks), what S workers'
 * groups hold, so N workers with 1 group compute what one process with N groups
 * computes. Returns net's rows per part [N, E]. Call inside a tidy.
 * @throws ContractError for no parts or parts of different N; ConfigError
 *   (model.bnSplits) when N does not divide into S.
 */
export function asOneBatch<T extends tf.Tensor>(
  net: (x: T) => tf.Tensor2D,
  parts: readonly T[],
  splits: number,
): tf.Tensor2D[] {
  const n = parts[0]?.shape[0];
  if (n === undefined || parts.some((p) => p.shape[0] !== n)) {
    throw new ContractError(
      `asOneBatch needs parts of one batch size, got [${parts.map((p) => p.shape[0]).join(', ')}]`,
    );
  }
  if (n % splits !== 0) {
    throw new ConfigError(
      'model.bnSplits',
      `a batch of ${n} does not divide into ${splits} BatchNorm splits`,
      { hint: 'choose optim.batchSize divisible by model.bnSplits' },
    );
  }
  const part = parts[0]!.shape[0] / splits;
  const slices = Array.from({ length: splits }, (_, s) =>
    parts.map((p) => (splits === 1 ? p : (p.slice(s * part, part) as T))),
  ).flat(); // split-major: [split 0 of every part, split 1 of every part, ...]
  const pieces = tf.split<tf.Tensor2D>(net(tf.concat(slices) as T), slices.length);
  return parts.map((_, c) => {
    const rows = Array.from({ length: splits }, (_, s) => pieces[s * parts.length + c]!);
    return splits === 1 ? rows[0]! : tf.concat(rows);
  });
}

/**
 * `net` ([n, h, w, C] -> [n, E]) on every crop of `groups` (default: all of
 * them), each group's crops as one batch (`asOneBatch`), as SwAV's and DINO's
 * official forward (MultiCropWrapper) concatenates the crops of one resolution:
 * a backbone's BN statistics are the group's crops' together. (The official code
 * batches consecutive crops of one width; here a group is a batch, so two
 * consecutive groups of one size are two batches.) Returns [N, E] per crop, in
 * crop order.
 */
export function throughCropGroups(
  net: (x: tf.Tensor4D) => tf.Tensor2D,
  views: Pick<Views, 'crops' | 'groups'>,
  splits: number,
  groups: readonly ViewGroup[] = views.groups,
): tf.Tensor2D[] {
  return groups.flatMap(({ start, count }) =>
    asOneBatch(net, views.crops.slice(start, start + count), splits),
  );
}

/**
 * Every crop's embedding [N, D] (training mode) as SwAV's official forward
 * computes it: the backbone on each group's crops as one batch
 * (`throughCropGroups`), then the projection head on every crop's features as
 * one batch (a BN head's statistics over all crops together), L2-normalised.
 * @throws ContractError for an encoder without `projectFeatures`.
 */
export function embedCrops(encoder: Encoder, views: Views, splits: number): tf.Tensor2D[] {
  const head = encoder.projectFeatures?.bind(encoder);
  if (!head) {
    throw new ContractError(`encoder '${encoder.name}' cannot run its head on features`, {
      hint: 'give the encoder projectFeatures(features, training) (multi-crop methods need it)',
    });
  }
  const features = throughCropGroups((x) => encoder.features(x, true), views, splits);
  return asOneBatch((f) => l2Normalize(head(f, true)), features, splits);
}

/** What the trainer hands a method at every phase of a step. */
export interface StepContext {
  /** Ends a named phase (one of the method's `phases`); benchmarks time them, otherwise a no-op. */
  mark(phase: string): void;
  /** Where training stands: schedules (cosine momentum) read it. */
  readonly clock: TrainingClock;
}

/** What `objective` returns: the loss the tape differentiates, and what else the step keeps. */
export interface Objective {
  /** The scalar loss; the trainer differentiates it with respect to `parameters()`. */
  loss: tf.Scalar;
  /**
   * Named scalars to log with the step, chosen by the method (e.g.
   * `pretext_accuracy` for contrastive methods; none for BYOL). Read once per step.
   */
  metrics?: Record<string, tf.Scalar>;
  /**
   * Tensors `afterStep` needs (the batch's keys to enqueue, the query features
   * to write into a bank). The trainer keeps them past the tape, as values with
   * no gradient, and disposes them after `afterStep`.
   */
  carry?: Record<string, tf.Tensor>;
}

/**
 * Parameters the optimizer treats alike: `fixedLr` keeps the base lr (SimSiam's
 * predictor), `lrScale`, `decay` (weight decay on or off) and `frozen` (SwAV's
 * prototypes and DINO's last layer for the first epoch) are the other options.
 */
export interface ParameterGroup extends GroupOptions {
  params: tf.Variable[];
}

/** Where a method's phases happen, in order; the trainer adds 'backward' and 'optimizer'. */
export interface MethodPhases {
  prepare: readonly string[];
  objective: readonly string[];
  afterStep: readonly string[];
}

export interface Method<P = unknown> {
  /** The plugin's name (what `strategy.name` says). */
  readonly name: string;
  readonly phases: MethodPhases;
  /**
   * The online network's trainable variables, in a fixed order: what the
   * optimizer trains and checkpoints. Target / key encoders are not in it.
   */
  parameterGroups(): ParameterGroup[];
  /** Before the tape, without gradient: momentum keys, targets. Disposed by the trainer's tidy. */
  prepare(views: Views, ctx: StepContext): P;
  /** Inside the tape: the loss, named metrics, and tensors for afterStep. */
  objective(views: Views, prepared: P, ctx: StepContext): Objective;
  /** After the optimizer step: enqueue, bank write, EMA update. */
  afterStep(
    input: { views: Views; prepared: P; carry: Record<string, tf.Tensor> },
    ctx: StepContext,
  ): void;
  /** Host values logged with the step and read before it runs (e.g. the EMA `momentum`). */
  stepValues?(): Record<string, number>;
  /** The loss of a model that has learnt nothing, when known (health checks compare with it). */
  chanceLoss?(batchSize: number): number | undefined;
  /** Named state parts (key encoder, queue, predictor...); checkpoints prefix each by its name. */
  state(): Record<string, StateTensors>;
  loadState(parts: Record<string, StateTensors>): void;
  dispose(): void;
}

/** The phases of a step of `method`, in order (the trainer's 'backward' and 'optimizer' included). */
export function stepPhases(method: Pick<Method, 'phases'>): string[] {
  const { prepare, objective, afterStep } = method.phases;
  return [...prepare, ...objective, 'backward', 'optimizer', ...afterStep];
}

/** All parameters of a method, flattened in group order. */
export function methodParameters(method: Pick<Method, 'parameterGroups'>): tf.Variable[] {
  return method.parameterGroups().flatMap((g) => g.params);
}

/**
 * A two-way objective from a one-way term (MoCo's symmetric loss, MoCo v3,
 * BYOL, SimSiam): term(0) uses view 1 as the query / online side against view 2,
 * term(1) the reverse. The losses are summed ('sum': l(q1, k2) + l(q2, k1), the
 * CIFAR demo and BYOL) or averaged ('mean': D(p1, z2)/2 + D(p2, z1)/2, SimSiam);
 * metrics are averaged; carried tensors are concatenated along axis 0 in view order.
 */
export function symmetrize(
  term: (direction: 0 | 1) => Objective,
  reduce: 'sum' | 'mean' = 'sum',
): Objective {
  const a = term(0);
  const b = term(1);
  const sum = tf.add(a.loss, b.loss) as tf.Scalar;
  const metrics: Record<string, tf.Scalar> = {};
  for (const [k, v] of Object.entries(a.metrics ?? {})) {
    const w = b.metrics?.[k];
    if (w) metrics[k] = tf.div(tf.add(v, w), 2) as tf.Scalar;
  }
  const carry: Record<string, tf.Tensor> = {};
  for (const [k, v] of Object.entries(a.carry ?? {})) {
    const w = b.carry?.[k];
    if (w) carry[k] = tf.concat([v, w], 0);
  }
  return {
    loss: reduce === 'sum' ? sum : (tf.div(sum, 2) as tf.Scalar),
    metrics,
    carry,
  };
}

/**
 * The same tensor in the forward pass, no gradient in the backward pass:
 * PyTorch's `.detach()` / the papers' stop-gradient `sg(.)` (SimSiam, BYOL's target).
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    return {
      value: tf.clone(input),
      gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
    };
  });
  return f(x) as T;
}

/** A part's variables as checkpoint state (by their stable names). */
export function variablesState(vars: ReadonlyMap<string, tf.Variable>): StateTensors {
  return { tensors: Object.fromEntries(vars), values: {} };
}

/** Assigns saved values to a part's variables; refuses a missing or mis-shaped entry. */
export function loadVariables(
  vars: ReadonlyMap<string, tf.Variable>,
  state: StateTensors | undefined,
  part: string,
): void {
  for (const [name, v] of vars) {
    const t = state?.tensors[name];
    if (!t || t.shape.join() !== v.shape.join()) {
      throw new StateError(`checkpoint lacks a matching ${part}/${name}`, {
        hint: 'resume with the model and method config the run was trained with',
      });
    }
    v.assign(t);
  }
}

/** What a method owns: parts with state (a queue, a key encoder) or heads with variables. */
export type OwnedPart = Stateful | Head;

const isHead = (p: OwnedPart): p is Head => 'namedVariables' in p;
const EMPTY: StateTensors = { tensors: {}, values: {} };

/**
 * A method's parts, saved, restored and released together by name: each part's
 * state is one checkpoint prefix (`target/...`, `predictor/...`); a head saves its
 * variables. Methods extend it and only write their step.
 */
export abstract class MethodParts {
  constructor(private readonly owned: Readonly<Record<string, OwnedPart>>) {}

  state(): Record<string, StateTensors> {
    const out: Record<string, StateTensors> = {};
    for (const [name, p] of Object.entries(this.owned)) {
      out[name] = isHead(p) ? variablesState(p.namedVariables()) : p.state();
    }
    return out;
  }

  /** @throws StateError when a head's variables are missing or mis-shaped in `parts`. */
  loadState(parts: Record<string, StateTensors>): void {
    for (const [name, p] of Object.entries(this.owned)) {
      if (isHead(p)) loadVariables(p.namedVariables(), parts[name], name);
      else p.loadState(parts[name] ?? EMPTY);
    }
  }

  dispose(): void {
    for (const p of Object.values(this.owned)) p.dispose();
  }
}
