import { z } from 'zod';
import {
  composeContrastive,
  definePlugin,
  MomentumKeyEncoder,
  QueueSource,
  scheduledMomentum,
  type Plugin,
} from '@contrast/core';

export const PLUGIN_NAME = 'momentum-queue';

export const MomentumQueueConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    queueSize: z
      .number()
      .int()
      .positive()
      .default(4096)
      .describe('K: keys in the queue (65536 in MoCo v1 on ImageNet, 4096 in the CIFAR demo).'),
    momentum: z
      .number()
      .min(0)
      .max(1)
      .default(0.99)
      .describe('m: key-encoder momentum (0.999 in MoCo v1, 0.99 in the CIFAR demo).'),
    momentumSchedule: z
      .enum(['fixed', 'cosine'])
      .default('fixed')
      .describe(
        "'fixed' (MoCo v1/v2) or 'cosine': m rises from `momentum` to 1 over the run (BYOL, MoCo v3).",
      ),
    shuffleBn: z
      .boolean()
      .default(true)
      .describe(
        'Shuffle BN: shuffle the key batch before the key encoder, un-shuffle after. It matters when BN is split (model.bnSplits > 1); with plain BN it would be a no-op and is skipped. false turns it off for the ablation.',
      ),
  })
  .strict();

export type MomentumQueueConfig = z.infer<typeof MomentumQueueConfigSchema>;

/**
 * MoCo (He et al. 2020) v1/v2 and the CIFAR demo: the positive key is the
 * other view through the momentum encoder, the negatives are the K keys of a
 * FIFO queue, InfoNCE; keys enqueued and the key encoder EMA'd after each step.
 */
export function momentumQueuePlugin(): Plugin<MomentumQueueConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description: 'MoCo: FIFO queue of keys from an EMA key encoder, InfoNCE',
    configSchema: MomentumQueueConfigSchema,
    loss: { default: 'infonce', kind: 'explicit', temperature: 0.1 },
    build(ctx) {
      const { encoder, options, rng, collectives } = ctx;
      // BN is split when SplitBatchNorm is on or when each worker normalises its own slice
      const split = ctx.config.model.bnSplits > 1 || collectives.worldSize > 1;
      const keyEncoder = new MomentumKeyEncoder(
        encoder,
        scheduledMomentum(options.momentum, options.momentumSchedule, ctx.clock),
        options.shuffleBn && split ? rng.fork() : undefined,
        collectives,
      );
      const source = new QueueSource(PLUGIN_NAME, options.queueSize, encoder.embedDim, rng.fork());
      return composeContrastive(ctx, { keyEncoder, source });
    },
  });
}
