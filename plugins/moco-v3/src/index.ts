import { z } from 'zod';
import {
  BatchKeysSource,
  bindStrategy,
  ConfigError,
  definePlugin,
  KeyBatchInfoNceLoss,
  MomentumKeyEncoder,
  cosineMomentum,
  Tokens,
  type Plugin,
} from '@contrast/core';
import { PredictorEncoder } from '@contrast/models';

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
 * a predictor on the query encoder, a momentum key encoder (cosine momentum),
 * the other keys of the batch as negatives, the 2t-scaled in-batch InfoNCE, and
 * the symmetric loss of the trainer's step. No queue.
 */
export function mocoV3Plugin(): Plugin<MocoV3Config> {
  return definePlugin({
    name: PLUGIN_NAME,
    description: 'MoCo v3: predictor + momentum key encoder, in-batch keys as negatives, symmetric',
    configSchema: MocoV3ConfigSchema,
    negatives: 'in-batch',
    check({ config }) {
      if (!config.loss.symmetric) {
        throw new ConfigError('loss.symmetric', 'MoCo v3 uses the symmetric loss', {
          hint: 'set loss.symmetric: true',
        });
      }
      if (config.optim.batchSize < 2) {
        throw new ConfigError('optim.batchSize', 'in-batch negatives need at least 2 samples');
      }
    },
    register(container) {
      const config = container.resolve(Tokens.StrategyConfig) as MocoV3Config;
      const base = container.resolve(Tokens.Encoder);
      const rng = container.resolve(Tokens.Rng);
      // the optimizer, checkpoints and kNN see base + predictor; the key encoder follows base only
      container.register(Tokens.Encoder, {
        useValue: new PredictorEncoder(base, config.predictorHidden, { rng: rng.fork() }),
      });
      const clock = container.resolve(Tokens.Clock);
      bindStrategy(container, {
        source: { create: () => new BatchKeysSource(PLUGIN_NAME) },
        keyEncoder: () =>
          new MomentumKeyEncoder(base, () =>
            cosineMomentum(config.momentum, clock.step, clock.total),
          ),
        loss: () => new KeyBatchInfoNceLoss(),
      });
    },
  });
}
