import {
  composeContrastive,
  definePlugin,
  MomentumKeyEncoder,
  QueueSource,
  z,
} from '@contrast/core';

/**
 * A MoCo of shared parts for the trainer's own tests (no plugin package):
 * momentum key encoder (m 0.99), a queue of 64, InfoNCE at t 0.1.
 */
export const testMoco = definePlugin({
  name: 'moco',
  description: 'momentum keys and a queue',
  configSchema: z.object({ name: z.literal('moco') }).strict(),
  loss: { default: 'infonce', kind: 'explicit', temperature: 0.1 },
  build(ctx) {
    const keyEncoder = new MomentumKeyEncoder(ctx.encoder, 0.99);
    const source = new QueueSource('moco', 64, ctx.encoder.embedDim, ctx.rng.fork());
    return composeContrastive(ctx, { keyEncoder, source });
  },
});
