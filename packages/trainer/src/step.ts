import * as tf from '@tensorflow/tfjs';
import {
  methodParameters,
  stepPhases,
  type Method,
  type StepContext,
  type TrainingClock,
  type Views,
} from '@contrast/core';
import type { Optimizer } from './sgd.js';

/** What one step needs: the method, its optimizer, the clock schedules read. */
export interface StepParts {
  method: Method;
  optimizer: Optimizer;
  clock: TrainingClock;
  /**
   * Called as each phase of the step ends (benchmarks time them; the native
   * backend runs kernels synchronously, so the time between marks is the phase's).
   * The phases are the method's (`stepPhases(method)`), plus 'backward' and 'optimizer'.
   */
  mark?: (phase: string) => void;
}

/** A step's loss and the method's named metrics, as scalars the caller reads and disposes. */
export interface StepTensors {
  loss: tf.Scalar;
  metrics: Record<string, tf.Scalar>;
}

/** The phases of a step of `method`, in order (re-exported for the benchmarks). */
export { stepPhases };

/**
 * The generic step (DESIGN.md), the same for every method:
 *   before = method.prepare(views)                       no gradient
 *   grads  = d objective(views, before).loss / d params  params = method.parameterGroups()
 *   optimizer.apply(grads, lr per group)                 'fixedLr' groups keep `baseLr`
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
  const lrs = groups.flatMap((g) => g.params.map(() => (g.fixedLr ? baseLr : lr)));
  let metrics: Record<string, tf.Scalar> = {};
  let carry: Record<string, tf.Tensor> = {};
  const loss = tf.tidy(() => {
    const prepared = method.prepare(views, ctx);
    const { value, grads } = tf.variableGrads(() => {
      const out = method.objective(views, prepared, ctx);
      metrics = keepAll(out.metrics ?? {});
      carry = keepAll(out.carry ?? {});
      return out.loss;
    }, params);
    ctx.mark('backward');
    optimizer.apply(grads, lrs);
    ctx.mark('optimizer');
    method.afterStep({ views, prepared, carry }, ctx);
    return value;
  });
  tf.dispose(Object.values(carry));
  return { loss, metrics };
}

function keepAll<T extends tf.Tensor>(tensors: Record<string, T>): Record<string, T> {
  for (const t of Object.values(tensors)) tf.keep(t);
  return tensors;
}

/** The optimizer's parameter list for a method (what `createOptimizer` is given). */
export { methodParameters };
