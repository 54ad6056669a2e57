import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ParameterGroup, ParameterStep } from '@contrast/core';
import { AdamW, ParameterPlan, Sgd, learningRate } from '@contrast/trainer';
import { runPython } from './python.js';

/** A tiny optimization problem both sides run: parameters, gradients and group options. */
export interface OptimProblem {
  optimizer: 'adamw' | 'sgd';
  betas: [number, number];
  eps: number;
  momentum: number;
  /** Parameter values and shapes (float32 on both sides). */
  params: { shape: number[]; values: number[] }[];
  /** The method's groups over `params`, by index, with their options. */
  groups: (Omit<ParameterGroup, 'params'> & { params: number[] })[];
  optim: {
    lr: number;
    weightDecay: number;
    weightDecayEnd?: number;
    decay: 'all' | 'no-norm-bias';
    clipGradNorm: number;
    clipMode: 'global' | 'per-parameter';
  };
  /** The fixed gradient of every parameter at every step. */
  grads: number[][][];
}

/**
 * The optimizer case of the parity harness: AdamW with betas (0.9, 0.95) and
 * decoupled decay on a scheduled wd, no decay for the rank-1 parameter
 * (`no-norm-bias`), a group at twice the lr, one frozen for the first 2 steps,
 * and clipping to a bound the early gradients exceed; `steps` steps of a
 * half-cosine lr. Gradients are a fixed sequence of signed values of several
 * magnitudes (no randomness on either side).
 */
export function optimProblem(
  clipMode: 'global' | 'per-parameter' = 'global',
  optimizer: 'adamw' | 'sgd' = 'adamw',
  steps = 5,
): OptimProblem {
  const shapes = [[2, 3], [3], [2]];
  const fill = (n: number, k: number) =>
    Array.from({ length: n }, (_, i) => Math.sin(1.3 * (i + 1) + 0.7 * k) * (1 + (i % 3)));
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  return {
    optimizer,
    betas: [0.9, 0.95],
    eps: 1e-8,
    momentum: 0.9,
    params: shapes.map((shape, k) => ({ shape, values: fill(size(shape), 10 + k) })),
    groups: [{ params: [0, 1] }, { params: [2], lrScale: 2, frozen: { steps: 2 } }],
    optim: {
      lr: 0.05,
      weightDecay: 0.1,
      weightDecayEnd: 0.4,
      decay: 'no-norm-bias',
      clipGradNorm: 2,
      clipMode,
    },
    grads: Array.from({ length: steps }, (_, t) =>
      shapes.map((s, k) => fill(size(s), 3 * t + k).map((g) => g * (t < 2 ? 3 : 0.5))),
    ),
  };
}

/**
 * Contrast's side: the parameters after each step (flat, in `params` order),
 * through ParameterPlan and the optimizer, and each step's lr and weight decay
 * per parameter as the plan gave them (in the groups' order; null: frozen).
 */
export function runContrastOptim(p: OptimProblem): {
  trajectory: number[][][];
  steps: (ParameterStep | null)[][];
} {
  const vars = p.params.map((x) => tf.variable(tf.tensor(x.values, x.shape)));
  const groups = p.groups.map(({ params, ...o }) => ({
    ...o,
    params: params.map((i) => vars[i]!),
  }));
  const order = groups.flatMap((g) => g.params);
  const opt =
    p.optimizer === 'adamw' ? new AdamW(order, p.betas, p.eps) : new Sgd(order, p.momentum);
  const plan = new ParameterPlan(groups, { ...p.optim, groups: [] }, 1);
  const total = p.grads.length;
  const out: number[][][] = [];
  p.grads.forEach((step, t) => {
    tf.tidy(() => {
      const grads = Object.fromEntries(vars.map((v, i) => [v.name, tf.tensor(step[i]!, v.shape)]));
      const lr = learningRate('cosine', p.optim.lr, t, total);
      plan.apply(opt, order, grads, { step: t, total, lr, baseLr: p.optim.lr });
    });
    out.push(vars.map((v) => Array.from(v.dataSync())));
  });
  const steps = p.grads.map((_, t) =>
    plan.steps(t, total, learningRate('cosine', p.optim.lr, t, total), p.optim.lr),
  );
  opt.dispose();
  tf.dispose(vars);
  return { trajectory: out, steps };
}

/**
 * PyTorch's side (python/optim.py): torch.optim.AdamW / SGD with one group per
 * parameter, given each step's lr and weight decay as Contrast's plan computed
 * them (null: .grad None), and clip_grad_norm_ or DINO's clip_gradients.
 */
export function runTorchOptim(
  p: OptimProblem,
  steps: readonly (ParameterStep | null)[][],
): number[][][] {
  const order = p.groups.flatMap((g) => g.params);
  const nest = (values: number[], shape: number[]): unknown =>
    shape.length <= 1
      ? values
      : Array.from({ length: shape[0]! }, (_, i) => {
          const n = values.length / shape[0]!;
          return nest(values.slice(i * n, (i + 1) * n), shape.slice(1));
        });
  const input = {
    optimizer: p.optimizer,
    betas: p.betas,
    eps: p.eps,
    momentum: p.momentum,
    params: order.map((i) => nest(p.params[i]!.values, p.params[i]!.shape)),
    grads: p.grads.map((g) => order.map((i) => nest(g[i]!, p.params[i]!.shape))),
    steps,
    clip: { maxNorm: p.optim.clipGradNorm, mode: p.optim.clipMode },
  };
  const dir = mkdtempSync(join(tmpdir(), 'contrast-optim-'));
  let out: { trajectory: unknown[][] };
  try {
    writeFileSync(join(dir, 'problem.json'), JSON.stringify(input));
    out = JSON.parse(runPython('optim.py', [join(dir, 'problem.json')])) as typeof out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // back to Contrast's parameter order, flattened
  return out.trajectory.map((params) => {
    const flat: number[][] = [];
    order.forEach((i, k) => (flat[i] = (params[k] as unknown[]).flat(Infinity) as number[]));
    return flat;
  });
}

/** The cases `pnpm parity optim` and the suite run: optimizer and clipping mode. */
export const OPTIM_CASES = [
  ['adamw', 'global'],
  ['adamw', 'per-parameter'],
  ['sgd', 'global'],
] as const;

/** The largest absolute difference of the parameters at each step. */
export function optimDiffs(a: number[][][], b: number[][][]): number[] {
  return a.map((step, t) =>
    Math.max(...step.flatMap((v, i) => v.map((x, j) => Math.abs(x - b[t]![i]![j]!)))),
  );
}
