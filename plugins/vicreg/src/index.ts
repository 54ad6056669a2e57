import { z } from 'zod';
import {
  defineLoss,
  definePlugin,
  lossOfKind,
  PairedMethod,
  vicregPairedLoss,
  type Collectives,
  type Encoder,
  type PairedLoss,
  type Plugin,
} from '@contrast/core';

export const PLUGIN_NAME = 'vicreg';

const weight = (value: number, what: string) =>
  z.number().nonnegative().default(value).describe(what);

/** The options of the 'vicreg' loss (`loss: { name: vicreg, invariance: 25, ... }`). */
export const VicRegLossOptionsSchema = z
  .object({
    invariance: weight(25, 'lambda: weight of the invariance term, the MSE of the two views (25).'),
    variance: weight(25, 'mu: weight of the variance term, the hinge on each dimension std (25).'),
    covariance: weight(1, 'nu: weight of the covariance term, the off-diagonal squares / D (1).'),
  })
  .strict();

/** The 'vicreg' loss entry, kind 'paired': `vicregLoss` (core) with its three weights. */
export const vicregLossEntry = defineLoss({
  kind: 'paired',
  options: VicRegLossOptionsSchema,
  create: (_context, weights) => vicregPairedLoss(weights),
});

export const VicRegConfigSchema = z.object({ name: z.literal(PLUGIN_NAME) }).strict();
export type VicRegConfig = z.infer<typeof VicRegConfigSchema>;

/**
 * VICReg (Bardes et al. 2022, Algorithm 1): one encoder f (backbone + expander)
 * for both views, no predictor, no negatives, no stop-gradient:
 *   z1, z2 = f(x1), f(x2)
 *   L = lambda s(z1, z2) + mu [v(z1) + v(z2)] / 2 + nu [c(z1) + c(z2)]
 * Data-parallel: as the official code, every worker's embeddings are gathered
 * with gradient (its FullGatherLayer) and the variance and covariance are the
 * global batch's; each worker computes the loss of the whole batch.
 */
export class VicReg extends PairedMethod {
  constructor(encoder: Encoder, loss: PairedLoss, collectives: Collectives) {
    super(PLUGIN_NAME, encoder, loss, collectives);
  }
}

export function vicregPlugin(): Plugin<VicRegConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description: "VICReg: invariance, variance and covariance terms on the two views' embeddings",
    configSchema: VicRegConfigSchema,
    loss: { default: PLUGIN_NAME, kind: 'paired' },
    losses: { [PLUGIN_NAME]: vicregLossEntry },
    build: (ctx) =>
      new VicReg(ctx.encoder, lossOfKind<PairedLoss>(ctx, ['paired']), ctx.collectives),
  });
}
