import { z } from 'zod';
import {
  bindMethod,
  composeContrastive,
  ConfigError,
  definePlugin,
  MemoryBank,
  NoKeyEncoder,
  sampleIndices,
  StoreBackedSource,
  Tokens,
  type Keys,
  type KeysInput,
  type NegativeSource,
  type Plugin,
  type Rng,
} from '@contrast/core';

export const PLUGIN_NAME = 'memory-bank';

export const MemoryBankConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    /** K: bank rows drawn as negatives each step (4096 in InstDisc's NCE). */
    negatives: z.number().int().positive().default(4096),
    /** Bank momentum: v <- normalise(m v + (1 - m) f); 0.5 in InstDisc. */
    momentum: z.number().min(0).max(1).default(0.5),
    /** Never draw the rows of the batch's own samples as negatives. */
    excludePositives: z.boolean().default(true),
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
export class MemoryBankSource extends StoreBackedSource<MemoryBank> implements NegativeSource {
  readonly name = PLUGIN_NAME;
  readonly updatePhase = 'bank_write';
  private readonly rng: Rng;

  /** A bank of `size` rows of width `dim`; `rng` initialises it, then a fork of it draws negatives. */
  constructor(
    private readonly config: MemoryBankConfig,
    size: number,
    dim: number,
    rng: Rng,
  ) {
    super(new MemoryBank(size, dim, rng.fork()));
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

  afterStep({ query, indices }: Parameters<NegativeSource['afterStep']>[0]): void {
    this.bank.update(indices, query, this.config.momentum);
  }
}

export function memoryBankPlugin(): Plugin<MemoryBankConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description:
      'InstDisc memory bank: indexed bank of past query features, sampled negatives, InfoNCE (or NCE)',
    configSchema: MemoryBankConfigSchema,
    loss: { default: 'infonce', kind: 'explicit', temperature: 0.1 },
    check({ config, method: strategy, dataset }) {
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
    register(container, config) {
      bindMethod(container, (c) => {
        const keyEncoder = new NoKeyEncoder();
        const dim = c.resolve(Tokens.Encoder).embedDim;
        const size = c.resolve(Tokens.Dataset).train.n;
        const source = new MemoryBankSource(config, size, dim, c.resolve(Tokens.Rng));
        return composeContrastive(c, { name: PLUGIN_NAME, keyEncoder, source });
      });
    },
  });
}
