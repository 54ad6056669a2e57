import * as tf from '@tensorflow/tfjs';
import {
  defineOptimizer,
  OPTIM_FIELDS,
  parseWith,
  Registry,
  z,
  type ExperimentConfig,
  type Optimizer,
  type OptimizerEntry,
} from '@contrast/core';
import { AdamW } from './adamw.js';
import { Lars, Sgd } from './sgd.js';

const momentum = z
  .number()
  .min(0)
  .max(1)
  .default(0.9)
  .describe('Heavy-ball momentum (0.9 in MoCo v1/v2 and MoCo v3 with LARS).');

/** torch.optim.SGD with momentum and coupled weight decay (MoCo v1/v2). */
export const sgd = defineOptimizer({
  description: 'SGD with momentum and coupled weight decay, as torch.optim.SGD (MoCo v1/v2).',
  optionsSchema: z.object({ momentum }).strict(),
  create: (params, o) => new Sgd(params, o.momentum),
});

/** LARS as MoCo v3 and SimCLR use it (no decay or adaptation for rank-1 parameters). */
export const lars = defineOptimizer({
  description:
    'LARS (SimCLR, MoCo v3 with ResNets): momentum SGD whose weight updates are scaled by eta * ||w|| / ||g + wd w||; biases and norms get neither decay nor adaptation.',
  optionsSchema: z
    .object({
      momentum,
      larsEta: z.number().positive().default(0.001).describe('LARS trust coefficient eta.'),
    })
    .strict(),
  create: (params, o) => new Lars(params, o.momentum, o.larsEta),
});

/** torch.optim.AdamW (MoCo v3 and DINO with ViTs). */
export const adamw = defineOptimizer({
  description:
    "AdamW as torch.optim.AdamW: decoupled weight decay, bias-corrected moments, eps after the square root (MoCo v3's ViTs: PyTorch's default betas, lr 1.5e-4 x B / 256, wd 0.1; DINO: wd 0.04 to 0.4).",
  optionsSchema: z
    .object({
      betas: z
        .tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)])
        .default([0.9, 0.999])
        .describe(
          "Decay rates (b1, b2) of the moments (PyTorch's [0.9, 0.999], which MoCo v3 keeps; MAE: [0.9, 0.95]).",
        ),
      eps: z
        .number()
        .positive()
        .default(1e-8)
        .describe('Added to the square root of the bias-corrected second moment (1e-8).'),
    })
    .strict(),
  create: (params, o) => new AdamW(params, o.betas, o.eps),
});

/** The optimizers built in, by the name `optim.optimizer` gives. */
export const BUILTIN_OPTIMIZERS: Readonly<Record<string, OptimizerEntry>> = {
  sgd: sgd as OptimizerEntry,
  lars: lars as OptimizerEntry,
  adamw: adamw as OptimizerEntry,
};

/**
 * A built-in optimizer over `params` from an `optim` section (its own fields
 * parsed by the optimizer's schema), outside an experiment's composition (the
 * step benchmarks). Experiments get theirs from `Tokens.OptimizerFactory`.
 * @throws UnknownNameError / ConfigError as the composition would.
 */
export function createOptimizer(
  params: readonly tf.Variable[],
  optim: ExperimentConfig['optim'],
): Optimizer {
  const builtIn = new Registry<OptimizerEntry>('optimizer');
  for (const [name, e] of Object.entries(BUILTIN_OPTIMIZERS)) builtIn.register(name, e);
  const entry = builtIn.get(optim.optimizer);
  const own = Object.fromEntries(Object.entries(optim).filter(([k]) => !OPTIM_FIELDS.includes(k)));
  return entry.create(params, parseWith(entry.optionsSchema, own, 'optim'));
}
