import { z } from 'zod';
import {
  barlowTwinsPairedLoss,
  defineLoss,
  definePlugin,
  lossOfKind,
  PairedMethod,
  type Collectives,
  type Encoder,
  type PairedLoss,
  type Plugin,
} from '@contrast/core';

export const PLUGIN_NAME = 'barlow-twins';

/** The options of the 'barlow-twins' loss (`loss: { name: barlow-twins, lambda: 0.0051 }`). */
export const BarlowTwinsLossOptionsSchema = z
  .object({
    lambda: z
      .number()
      .nonnegative()
      .default(0.0051)
      .describe(
        'lambda: weight of the off-diagonal (redundancy-reduction) term (0.0051 in the official code; the paper rounds it to 5e-3).',
      ),
    scaleLoss: z
      .number()
      .positive()
      .default(1)
      .describe(
        "A factor on the whole loss (1: the paper and the official code's current version; an earlier version scaled it, with the lr to match).",
      ),
  })
  .strict();

/**
 * The 'barlow-twins' loss entry, kind 'paired': `barlowTwinsLoss` (core) with
 * its options lambda and scaleLoss.
 */
export const barlowTwinsLossEntry = defineLoss({
  kind: 'paired',
  options: BarlowTwinsLossOptionsSchema,
  create: (_context, { lambda, scaleLoss }) => barlowTwinsPairedLoss({ lambda, scale: scaleLoss }),
});

export const BarlowTwinsConfigSchema = z.object({ name: z.literal(PLUGIN_NAME) }).strict();
export type BarlowTwinsConfig = z.infer<typeof BarlowTwinsConfigSchema>;

/**
 * Barlow Twins (Zbontar et al. 2021, Algorithm 1): one encoder f (backbone +
 * projector) for both views, no predictor, no negatives, no stop-gradient:
 *   z1, z2 = f(x1), f(x2);  C = bn(z1)^T bn(z2) / N  (bn: along the batch, no affine)
 *   L = sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2
 * Data-parallel: the batch statistics and C are the global batch's (the official
 * code's SyncBatchNorm and all_reduce of C): every worker's embeddings are
 * gathered with gradient and each worker computes the loss of the whole batch.
 */
export class BarlowTwins extends PairedMethod {
  constructor(encoder: Encoder, loss: PairedLoss, collectives: Collectives) {
    super(PLUGIN_NAME, encoder, loss, collectives);
  }
}

export function barlowTwinsPlugin(): Plugin<BarlowTwinsConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description:
      'Barlow Twins: cross-correlation of the batch-standardised embeddings towards the identity',
    configSchema: BarlowTwinsConfigSchema,
    loss: { default: PLUGIN_NAME, kind: 'paired' },
    losses: { [PLUGIN_NAME]: barlowTwinsLossEntry },
    build: (ctx) =>
      new BarlowTwins(ctx.encoder, lossOfKind<PairedLoss>(ctx, ['paired']), ctx.collectives),
  });
}
