import { z } from 'zod';
import {
  bnGroups,
  BatchKeysSource,
  composeContrastive,
  ConfigError,
  definePlugin,
  KeyBatchInfoNceLoss,
  MomentumKeyEncoder,
  scheduledMomentum,
  type Plugin,
} from '@contrast/core';
import { createPredictor } from '@contrast/models';

export const PLUGIN_NAME = 'moco-v3';

export const MocoV3ConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    momentum: z
      .number()
      .min(0)
      .max(1)
      .default(0.99)
      .describe(
        "m0: the key encoder's momentum at the start (0.99 in MoCo v3), rising to 1 on a cosine.",
      ),
    predictorHidden: z
      .number()
      .int()
      .positive()
      .default(512)
      .describe(
        'Hidden width of the predictor MLP (4096 in MoCo v3; scaled down for small encoders).',
      ),
  })
  .strict();
export type MocoV3Config = z.infer<typeof MocoV3ConfigSchema>;

/**
 * MoCo v3 (Chen, Xie, He 2021), ResNet variant, as a composition of shared parts:
 * a predictor on the query side (q = normalise(predictor(projection(x)))), a
 * momentum key encoder with a cosine momentum, the other keys of the batch as
 * negatives, the 2t-scaled in-batch InfoNCE ('infonce-batch', contributed
 * here), two-way by default (l(q1, k2) + l(q2, k1)). No queue.
 */
export function mocoV3Plugin(): Plugin<MocoV3Config> {
  return definePlugin({
    name: PLUGIN_NAME,
    description: 'MoCo v3: predictor + momentum key encoder, in-batch keys as negatives, symmetric',
    configSchema: MocoV3ConfigSchema,
    loss: { default: 'infonce-batch', kind: 'in-batch', temperature: 0.2, symmetric: true },
    losses: { 'infonce-batch': { kind: 'in-batch', create: () => new KeyBatchInfoNceLoss() } },
    check({ config }) {
      if (config.optim.batchSize < 2) {
        throw new ConfigError('optim.batchSize', 'in-batch negatives need at least 2 samples', {
          hint: 'use a batch of 2 or more',
        });
      }
    },
    build(ctx) {
      const { encoder, options } = ctx;
      const predictor = createPredictor(
        encoder.embedDim,
        options.predictorHidden,
        ctx.rng.fork(),
        bnGroups(ctx),
      );
      const keyEncoder = new MomentumKeyEncoder(
        encoder,
        scheduledMomentum(options.momentum, 'cosine', ctx.clock),
      );
      const source = new BatchKeysSource(PLUGIN_NAME);
      return composeContrastive(ctx, { keyEncoder, source, predictor });
    },
  });
}
