import type * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  barlowTwinsLoss,
  bindMethod,
  collectivesOf,
  definePlugin,
  gatherBatch,
  MethodParts,
  PairedLoss,
  requireOwnLoss,
  Tokens,
  type BarlowTwinsSettings,
  type Collectives,
  type Encoder,
  type Method,
  type Plugin,
  type StepContext,
  type Views,
} from '@contrast/core';

export const PLUGIN_NAME = 'barlow-twins';

export const BarlowTwinsConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
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
export class BarlowTwins extends MethodParts implements Method<undefined> {
  readonly name = PLUGIN_NAME;
  readonly phases = { prepare: [], objective: ['forward', 'loss'], afterStep: [] };

  constructor(
    private readonly encoder: Encoder,
    private readonly settings: BarlowTwinsSettings,
    private readonly collectives: Collectives,
  ) {
    super({});
  }

  parameterGroups() {
    return [{ params: this.encoder.parameters() }];
  }

  prepare(): undefined {
    return undefined;
  }

  objective(views: Views, _prepared: undefined, ctx: StepContext) {
    const embed = (x: tf.Tensor4D) => gatherBatch(this.collectives, this.encoder.project(x, true));
    const z1 = embed(views.x1); // [B, D], B the global batch
    const z2 = embed(views.x2);
    ctx.mark('forward');
    const loss = barlowTwinsLoss(z1, z2, this.settings);
    ctx.mark('loss');
    return { loss };
  }

  afterStep(): void {}
}

export function barlowTwinsPlugin(): Plugin<BarlowTwinsConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description:
      'Barlow Twins: cross-correlation of the batch-standardised embeddings towards the identity',
    configSchema: BarlowTwinsConfigSchema,
    loss: { default: PLUGIN_NAME, kind: 'regression' },
    losses: {
      [PLUGIN_NAME]: {
        kind: 'regression',
        create: () =>
          new PairedLoss(PLUGIN_NAME, (a, b) => barlowTwinsLoss(a, b, { lambda: 0.0051 })),
      },
    },
    check({ config }) {
      requireOwnLoss(PLUGIN_NAME, PLUGIN_NAME, config.loss.name);
    },
    register(container, config) {
      bindMethod(container, (c) => {
        const settings = { lambda: config.lambda, scale: config.scaleLoss };
        return new BarlowTwins(c.resolve(Tokens.Encoder), settings, collectivesOf(c));
      });
    },
  });
}
