import * as tf from '@tensorflow/tfjs';
import {
  methodParameters,
  type Collectives,
  stepPhases,
  type Method,
  type Optimizer,
  type StepContext,
  type TrainingClock,
  type Views,
} from '@contrast/core';
import { gradientOf } from './sgd.js';
import type { ParameterPlan } from './groups.js';

/** What one step needs: the method, its optimizer and group options, the clock schedules read. */
export interface StepParts {
  method: Method;
  optimizer: Optimizer;
  /** The per-group options (lr scale, decay, frozen, clipping) over the optimizer's parameters. */
  plan: ParameterPlan;
  clock: TrainingClock;
  /**
   * Called as each phase of the step ends (benchmarks time them; the native
   * backend runs kernels synchronously, so the time between marks is the phase's).
   * The phases are the method's (`stepPhases(method)`), plus 'backward' and 'optimizer'.
   */
  mark?: (phase: string) => void;
  /**
   * Data-parallel (N > 1 workers): the gradients are averaged over workers
   * before the optimizer (one fused all-reduce that also averages the loss and
   * metrics, so every worker logs the global batch's), and `stop` votes travel
   * with them. Absent or N = 1: one process.
   */
  collectives?: Collectives;
  /** This worker asks the group to stop after this step (a stop signal arrived). */
  stop?: boolean;
}

/** A step's loss and the method's named metrics, as scalars the caller reads and disposes. */
export interface StepTensors {
  loss: tf.Scalar;
  metrics: Record<string, tf.Scalar>;
  /** Data-parallel: > 0 when any worker asked to stop after this step (the group stops together). */
  stopVotes?: tf.Scalar;
}

/** The phases of a step of `method`, in order (re-exported for the benchmarks). */
export { stepPhases };

/**
 * The generic step (docs/design.md), the same for every method:
 *   before = method.prepare(views)                       no gradient
 *   grads  = d objective(views, before).loss / d params  params = method.parameterGroups()
 *   grads  = all-reduce mean(grads)                      data-parallel only (as DDP)
 *   plan.apply(optimizer, grads)                         clip; per group: lr (scheduled or
 *                                                        `baseLr`, scaled), decay, frozen
 *   method.afterStep({ views, before, carry })           enqueue, bank write, EMA
 * All of it runs in one tf.tidy; the objective's metrics and carried tensors are
 * kept past the tape (values only) and the carry is freed after afterStep.
 * @param lr the scheduled learning rate of this step
 * @param baseLr the unscheduled one (for parameter groups with a fixed lr)
 */
export function trainStep(parts: StepParts, views: Views, lr: number, baseLr = lr): StepTensors {
  const { method, optimizer } = parts;
  const ctx: StepContext = { mark: parts.mark ?? (() => undefined), clock: parts.clock };
  const groups = method.parameterGroups();
  const params = groups.flatMap((g) => g.params);
  const at = { step: parts.clock.step, total: parts.clock.total, lr, baseLr };
  const c = parts.collectives && parts.collectives.worldSize > 1 ? parts.collectives : undefined;
  let metrics: Record<string, tf.Scalar> = {};
  let carry: Record<string, tf.Tensor> = {};
  let stopVotes: tf.Scalar | undefined;
  const loss = tf.tidy(() => {
    const prepared = method.prepare(views, ctx);
    const { value, grads } = tf.variableGrads(() => {
      const out = method.objective(views, prepared, ctx);
      metrics = keepAll(out.metrics ?? {});
      carry = keepAll(out.carry ?? {});
      return out.loss;
    }, params);
    ctx.mark('backward');
    if (!c) {
      parts.plan.apply(optimizer, params, grads, at);
      ctx.mark('optimizer');
      method.afterStep({ views, prepared, carry }, ctx);
      return value;
    }
    const reduced = allReduceStep(c, params, grads, value, metrics, parts.stop ?? false);
    ctx.mark('all_reduce');
    parts.plan.apply(optimizer, params, reduced.grads, at);
    ctx.mark('optimizer');
    method.afterStep({ views, prepared, carry }, ctx);
    tf.dispose(Object.values(metrics));
    metrics = keepAll(reduced.metrics);
    stopVotes = tf.keep(reduced.stopVotes);
    return reduced.loss;
  });
  tf.dispose(Object.values(carry));
  return { loss, metrics, ...(stopVotes ? { stopVotes } : {}) };
}

/**
 * One fused all-reduce (mean over workers) of a data-parallel step: every
 * gradient, then the loss, the metrics and this worker's stop vote. The mean
 * of the workers' gradients of their slices' mean losses is the gradient of
 * the global batch's mean loss (equal slices), as one process computes it.
 */
function allReduceStep(
  c: Collectives,
  params: tf.Variable[],
  grads: tf.NamedTensorMap,
  loss: tf.Scalar,
  metrics: Record<string, tf.Scalar>,
  stop: boolean,
) {
  const names = Object.keys(metrics);
  const list = [
    ...params.map((p) => gradientOf(grads, p)),
    loss,
    ...names.map((k) => metrics[k]!),
    tf.scalar(stop ? 1 : 0),
  ];
  const out = c.allReduceMean(list);
  const n = params.length;
  return {
    grads: Object.fromEntries(params.map((p, i) => [p.name, out[i]!])) as tf.NamedTensorMap,
    loss: out[n] as tf.Scalar,
    metrics: Object.fromEntries(names.map((k, i) => [k, out[n + 1 + i] as tf.Scalar])),
    stopVotes: out[n + 1 + names.length] as tf.Scalar,
  };
}

function keepAll<T extends tf.Tensor>(tensors: Record<string, T>): Record<string, T> {
  for (const t of Object.values(tensors)) tf.keep(t);
  return tensors;
}

/** The optimizer's parameter list for a method (what `createOptimizer` is given). */
export { methodParameters };
