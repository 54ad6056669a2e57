import type * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  bindMethod,
  collectivesOf,
  definePlugin,
  gatherBatch,
  MethodParts,
  PairedLoss,
  requireOwnLoss,
  Tokens,
  vicregLoss,
  type Collectives,
  type Encoder,
  type Method,
  type Plugin,
  type StepContext,
  type VicRegSettings,
  type Views,
} from '@contrast/core';

export const PLUGIN_NAME = 'vicreg';

const weight = (value: number, what: string) =>
  z.number().nonnegative().default(value).describe(what);

export const VicRegConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    invariance: weight(25, 'lambda: weight of the invariance term, the MSE of the two views (25).'),
    variance: weight(25, 'mu: weight of the variance term, the hinge on each dimension std (25).'),
    covariance: weight(1, 'nu: weight of the covariance term, the off-diagonal squares / D (1).'),
  })
  .strict();
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
export class VicReg extends MethodParts implements Method<undefined> {
  readonly name = PLUGIN_NAME;
  readonly phases = { prepare: [], objective: ['forward', 'loss'], afterStep: [] };

  constructor(
    private readonly encoder: Encoder,
    private readonly weights: VicRegSettings,
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
    const { loss, invariance, variance, covariance } = vicregLoss(z1, z2, this.weights);
    ctx.mark('loss');
    return {
      loss,
      metrics: {
        invariance_loss: invariance,
        variance_loss: variance,
        covariance_loss: covariance,
      },
    };
  }

  afterStep(): void {}
}

export function vicregPlugin(): Plugin<VicRegConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description: "VICReg: invariance, variance and covariance terms on the two views' embeddings",
    configSchema: VicRegConfigSchema,
    loss: { default: PLUGIN_NAME, kind: 'regression' },
    losses: {
      [PLUGIN_NAME]: {
        kind: 'regression',
        create: () =>
          new PairedLoss(
            PLUGIN_NAME,
            (a, b) => vicregLoss(a, b, { invariance: 25, variance: 25, covariance: 1 }).loss,
          ),
      },
    },
    check({ config }) {
      requireOwnLoss(PLUGIN_NAME, PLUGIN_NAME, config.loss.name);
    },
    register(container, config) {
      bindMethod(container, (c) => {
        const { invariance, variance, covariance } = config;
        const weights = { invariance, variance, covariance };
        return new VicReg(c.resolve(Tokens.Encoder), weights, collectivesOf(c));
      });
    },
  });
}
