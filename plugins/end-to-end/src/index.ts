import { z } from 'zod';
import {
  BatchKeysSource,
  composeContrastive,
  ConfigError,
  definePlugin,
  SharedKeyEncoder,
  type Plugin,
} from '@contrast/core';

export const PLUGIN_NAME = 'end-to-end';

/** Nothing to configure: K = 2N - 2 is set by the batch size. */
export const EndToEndConfigSchema = z.object({ name: z.literal(PLUGIN_NAME) }).strict();
export type EndToEndConfig = z.infer<typeof EndToEndConfigSchema>;

/**
 * End-to-end (SimCLR; MoCo's Figure 2a): the key is the other view through the
 * query encoder itself, with gradient; the negatives are the other samples of the
 * batch, so the dictionary size is tied to the batch size.
 */
export function endToEndPlugin(): Plugin<EndToEndConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description:
      'SimCLR-style end-to-end: shared encoder with gradient, in-batch negatives, NT-Xent',
    configSchema: EndToEndConfigSchema,
    loss: { default: 'nt-xent', kind: 'in-batch', temperature: 0.1 },
    check({ config }) {
      if (config.optim.batchSize < 2) {
        throw new ConfigError(
          'optim.batchSize',
          `in-batch negatives need at least 2 samples, got ${config.optim.batchSize}`,
          {
            hint: 'use a batch of 2 or more (K = 2N - 2 negatives per query)',
          },
        );
      }
    },
    build(ctx) {
      return composeContrastive(ctx, {
        keyEncoder: new SharedKeyEncoder(ctx.encoder),
        source: new BatchKeysSource(PLUGIN_NAME),
      });
    },
  });
}
