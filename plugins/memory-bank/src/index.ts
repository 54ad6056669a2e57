import { z } from 'zod';
import {
  BankSource,
  composeContrastive,
  ConfigError,
  definePlugin,
  NoKeyEncoder,
  type Plugin,
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
 * Memory bank (InstDisc, Wu et al. 2018; MoCo's Figure 2b): no key encoder; the
 * positive is the bank row of the sample's own index, K negatives are drawn from
 * the bank, InfoNCE (or NCE); the batch's rows are rewritten after the step.
 */
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
    build(ctx) {
      const { options, datasetSize, encoder } = ctx;
      const source = new BankSource(PLUGIN_NAME, options, datasetSize, encoder.embedDim, ctx.rng);
      return composeContrastive(ctx, { keyEncoder: new NoKeyEncoder(), source });
    },
  });
}
