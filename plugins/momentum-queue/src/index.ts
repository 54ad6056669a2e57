import { inject, injectable } from 'tsyringe';
import type * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  bindStrategy,
  cosineMomentum,
  definePlugin,
  InfoNceLoss,
  KeyQueue,
  MomentumKeyEncoder,
  PluginError,
  Tokens,
  type Encoder,
  type Keys,
  type KeysInput,
  type NegativeSource,
  type Plugin,
  type Rng,
  StoreBackedSource,
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
 * MoCo (He et al. 2020): the positive key is the other view through the momentum
 * encoder, the negatives are the K keys in the queue. The loss sees the queue
 * before this batch's keys are enqueued (enqueue happens in afterStep).
 */
@injectable()
export class MomentumQueueSource extends StoreBackedSource<KeyQueue> implements NegativeSource {
  readonly name = PLUGIN_NAME;

  constructor(
    @inject(Tokens.StrategyConfig) config: MomentumQueueConfig,
    @inject(Tokens.Encoder) encoder: Encoder,
    @inject(Tokens.Rng) rng: Rng,
  ) {
    super(new KeyQueue(config.queueSize, encoder.embedDim, rng.fork()));
  }

  get queue(): KeyQueue {
    return this.store;
  }

  keys({ key }: KeysInput): Keys {
    if (!key)
      throw new PluginError(PLUGIN_NAME, 'needs key embeddings from the momentum key encoder');
    return { positive: key, negatives: this.queue.keys }; // l_pos: [N, 1], l_neg: [N, K]
  }

  afterStep({ key }: { key: tf.Tensor2D | undefined }): void {
    if (key) this.queue.enqueue(key);
  }
}

export function momentumQueuePlugin(): Plugin<MomentumQueueConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description: 'MoCo: FIFO queue of keys from an EMA key encoder, InfoNCE',
    configSchema: MomentumQueueConfigSchema,
    negatives: 'explicit',
    register(container) {
      bindStrategy(container, {
        source: MomentumQueueSource,
        keyEncoder: (c) => {
          const { momentum, momentumSchedule, shuffleBn } = c.resolve(
            Tokens.StrategyConfig,
          ) as MomentumQueueConfig;
          const clock = c.resolve(Tokens.Clock);
          const split = c.resolve(Tokens.Config).model.bnSplits > 1;
          return new MomentumKeyEncoder(
            c.resolve(Tokens.Encoder),
            momentumSchedule === 'cosine'
              ? () => cosineMomentum(momentum, clock.step, clock.total)
              : momentum,
            shuffleBn && split ? c.resolve(Tokens.Rng).fork() : undefined,
          );
        },
        loss: () => new InfoNceLoss(),
      });
    },
  });
}
