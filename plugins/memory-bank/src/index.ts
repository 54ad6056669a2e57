import { inject, injectable } from 'tsyringe';
import type * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  bindStrategy,
  ConfigError,
  definePlugin,
  InfoNceLoss,
  MemoryBank,
  NoKeyEncoder,
  sampleIndices,
  Tokens,
  type Encoder,
  type Keys,
  type KeysInput,
  type NegativeSource,
  type Plugin,
  type Rng,
  StoreBackedSource,
  type TrainingDataset,
} from '@contrast/core';

export const PLUGIN_NAME = 'memory-bank';

export const MemoryBankConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    negatives: z
      .number()
      .int()
      .positive()
      .default(4096)
      .describe("K: bank rows drawn as negatives each step (4096 in InstDisc's NCE)."),
    momentum: z
      .number()
      .min(0)
      .max(1)
      .default(0.5)
      .describe('Bank momentum: v <- normalise(m v + (1 - m) f); 0.5 in InstDisc.'),
    excludePositives: z
      .boolean()
      .default(true)
      .describe("Never draw the rows of the batch's own samples as negatives."),
  })
  .strict();
export type MemoryBankConfig = z.infer<typeof MemoryBankConfigSchema>;

/**
 * Memory bank (InstDisc; MoCo's Figure 2b): the positive is the bank row of the
 * sample's own index, a feature written by the query encoder in an earlier epoch;
 * K negatives are drawn uniformly from the bank each step (shared by the batch).
 * After the step the batch's rows are rewritten with the fresh query features.
 * There is no key encoder.
 */
@injectable()
export class MemoryBankSource extends StoreBackedSource<MemoryBank> implements NegativeSource {
  readonly name = PLUGIN_NAME;
  private readonly rng: Rng;

  constructor(
    @inject(Tokens.StrategyConfig) private readonly config: MemoryBankConfig,
    @inject(Tokens.Encoder) encoder: Encoder,
    @inject(Tokens.Dataset) dataset: TrainingDataset,
    @inject(Tokens.Rng) rng: Rng,
  ) {
    super(new MemoryBank(dataset.train.n, encoder.embedDim, rng.fork()));
    this.rng = rng.fork();
  }

  get bank(): MemoryBank {
    return this.store;
  }

  keys({ indices, indexArray }: KeysInput): Keys {
    const exclude = this.config.excludePositives ? indexArray : undefined;
    const drawn = sampleIndices(this.rng, this.bank.size, this.config.negatives, exclude);
    return { positive: this.bank.gather(indices), negatives: this.bank.gather(drawn) }; // [N, D], [K, D]
  }

  afterStep({ query, indices }: { query: tf.Tensor2D; indices: tf.Tensor1D }): void {
    this.bank.update(indices, query, this.config.momentum);
  }
}

export function memoryBankPlugin(): Plugin<MemoryBankConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description:
      'InstDisc memory bank: indexed bank of past query features, sampled negatives, InfoNCE (or NCE)',
    configSchema: MemoryBankConfigSchema,
    negatives: 'explicit',
    check({ config, strategy, dataset }) {
      if (!dataset.providesIndices) {
        throw new ConfigError(
          'data.dataset',
          `'${dataset.name}' does not give sample indices, which a memory bank needs`,
          {
            hint: 'use a dataset that returns indices, or strategy momentum-queue / end-to-end',
          },
        );
      }
      const available = dataset.train.n - (strategy.excludePositives ? config.optim.batchSize : 0);
      if (strategy.negatives > available) {
        throw new ConfigError(
          'strategy.negatives',
          `K = ${strategy.negatives} is larger than the ${available} bank rows available`,
          {
            hint: `use at most ${available}, or train on more samples`,
          },
        );
      }
    },
    register(container) {
      bindStrategy(container, {
        source: MemoryBankSource,
        keyEncoder: () => new NoKeyEncoder(),
        loss: () => new InfoNceLoss(),
      });
    },
  });
}
