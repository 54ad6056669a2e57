import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  bnGroups,
  defineLoss,
  definePlugin,
  EmbeddingQueue,
  embedCrops,
  lossOfKind,
  MethodParts,
  PluginError,
  Prototypes,
  swavLoss,
  swavQueueRows,
  type Collectives,
  type Encoder,
  type Method,
  type Plugin,
  type StepContext,
  type SwappedPredictionLoss,
  type Views,
} from '@contrast/core';

export const PLUGIN_NAME = 'swav';

/** The options of the 'swav' loss (`loss: { name: swav, epsilon: 0.05, sinkhornIterations: 3 }`). */
export const SwavLossOptionsSchema = z
  .object({
    epsilon: z
      .number()
      .min(0.02)
      .default(0.05)
      .describe(
        'epsilon of the Sinkhorn-Knopp codes, Q = exp(scores / epsilon) (0.05 in SwAV; >= 0.02 so that exp(1 / epsilon) summed over the batch stays finite in float32).',
      ),
    sinkhornIterations: z
      .number()
      .int()
      .positive()
      .default(3)
      .describe('Sinkhorn-Knopp iterations (3 in SwAV).'),
  })
  .strict();

/** The 'swav' loss entry, kind 'swapped-prediction': `swavLoss` (core) with its options. */
export const swavLossEntry = defineLoss({
  kind: 'swapped-prediction',
  options: SwavLossOptionsSchema,
  create: (_context, o) => swavLoss({ epsilon: o.epsilon, iterations: o.sinkhornIterations }),
});

export const SwavConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    prototypes: z
      .number()
      .int()
      .positive()
      .default(3000)
      .describe('K: prototypes (3000 in SwAV on ImageNet; a few hundred for a small dataset).'),
    queueLength: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe(
        'Rows of past embeddings the codes are computed with (0: none; 3840 in SwAV at batch 256). Rounded down to a multiple of the batch, as the official code does.',
      ),
    queueStartEpoch: z
      .number()
      .min(0)
      .default(15)
      .describe('Epoch the queue starts filling at (epoch_queue_starts, 15 in SwAV).'),
    freezePrototypesEpochs: z
      .number()
      .min(0)
      .default(1)
      .describe(
        'Epochs the prototypes are not updated at the start (freeze_prototypes_niters: about 1 epoch in SwAV).',
      ),
  })
  .strict();
export type SwavConfig = z.infer<typeof SwavConfigSchema>;

/** The settings a SwAV step reads. */
export interface SwavSettings {
  temperature: number;
  /** BatchNorm groups the encoder splits a batch into (model.bnSplits on this worker). */
  bnGroups: number;
  freezePrototypesEpochs: number;
  /** Steps completed before the queue starts filling. */
  queueStartStep: number;
}

/**
 * SwAV (Caron et al. 2020, Algorithm 1, main_swav.py): one encoder f (backbone +
 * projector, L2-normalised output), prototypes C (normalised before each step):
 *   z_v = normalize(f(x_v)) for every crop v;  s_v = z_v C   [B, K]
 * (`embedCrops`: the backbone on each crop group as one batch, the head on every crop's)
 *   q_a = sinkhorn(s_a) for each global crop a (no gradient; queue rows first)
 *   L = mean_a mean_{v != a} CE(q_a, softmax(s_v / tau))
 * Data-parallel: the Sinkhorn sums are every worker's (`swavLoss`'s collectives,
 * the official all_reduce). The queue holds the global batches' rows on every
 * worker (so every worker's state is the same, as a checkpoint needs) and each
 * worker's codes read its 1/N share: together the rows the official per-worker
 * queues hold.
 */
export class Swav extends MethodParts implements Method<undefined> {
  readonly name = PLUGIN_NAME;
  readonly phases = {
    prepare: ['normalize'],
    objective: ['forward', 'codes_loss'],
    afterStep: ['enqueue'],
  };

  constructor(
    private readonly encoder: Encoder,
    readonly prototypes: Prototypes,
    readonly queue: EmbeddingQueue | undefined,
    private readonly loss: SwappedPredictionLoss,
    private readonly settings: SwavSettings,
    private readonly collectives: Collectives,
  ) {
    super(queue ? { prototypes, queue } : { prototypes }); // checkpointed as prototypes/..., queue/...
  }

  parameterGroups() {
    const epochs = this.settings.freezePrototypesEpochs;
    return [
      { params: this.encoder.parameters() },
      { params: this.prototypes.parameters(), ...(epochs > 0 ? { frozen: { epochs } } : {}) },
    ];
  }

  /** log K: scores that carry no information give every prototype 1/K, whatever the codes. */
  chanceLoss(): number {
    return Math.log(this.prototypes.outDim);
  }

  prepare(_views: Views, ctx: StepContext): undefined {
    this.prototypes.normalize();
    ctx.mark('normalize');
    return undefined;
  }

  objective(views: Views, _prepared: undefined, ctx: StepContext) {
    const z = embedCrops(this.encoder, views, this.settings.bnGroups); // [B, D] per crop
    ctx.mark('forward');
    const scores = z.map((e) => this.prototypes.apply(e)); // [B, K] per crop
    const assign = Array.from({ length: views.groups[0]?.count ?? 0 }, (_, a) => a); // global crops
    const queued = this.queue?.full ? this.queue.workerRows() : undefined; // [M / N, A x D]
    const d = z[0]!.shape[1];
    const targets = assign.map((a) => ({
      crop: a,
      scores: queued
        ? tf.concat([this.prototypes.apply(queued.slice([0, a * d], [-1, d])), scores[a]!])
        : scores[a]!,
    }));
    const { temperature } = this.settings;
    const { collectives } = this;
    const { loss } = this.loss.compute({ scores, targets, temperature, collectives });
    ctx.mark('codes_loss');
    const carry: Record<string, tf.Tensor> = {};
    if (this.queue && ctx.clock.step >= this.settings.queueStartStep) {
      carry.queue = tf.concat(
        assign.map((a) => z[a]!),
        1,
      ); // [B, A x D]
    }
    return { loss, carry };
  }

  afterStep({ carry }: { carry: Record<string, tf.Tensor> }, ctx: StepContext): void {
    if (carry.queue) this.queue?.enqueue(carry.queue as tf.Tensor2D); // every worker's rows
    ctx.mark('enqueue');
  }
}

export function swavPlugin(): Plugin<SwavConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description: 'SwAV: swapped prediction of Sinkhorn-Knopp cluster codes across crops',
    configSchema: SwavConfigSchema,
    loss: { default: PLUGIN_NAME, kind: 'swapped-prediction', temperature: 0.1 },
    losses: { [PLUGIN_NAME]: swavLossEntry },
    build(ctx) {
      const { encoder, options, config, collectives } = ctx;
      if (!encoder.projectFeatures) {
        throw new PluginError(PLUGIN_NAME, `encoder '${encoder.name}' has no projectFeatures`, {
          hint: 'give the encoder projectFeatures(features, training): SwAV runs its head on every crop at once',
        });
      }
      const prototypes = new Prototypes(encoder.embedDim, options.prototypes, ctx.rng.fork());
      const { batchSize } = config.optim;
      const rows = swavQueueRows(options.queueLength, batchSize);
      const width = (config.data.views?.[0]?.count ?? 2) * encoder.embedDim;
      const queue =
        rows > 0 ? new EmbeddingQueue(rows, width, ctx.rng.fork(), collectives) : undefined;
      const n = ctx.dataset.train.n;
      const perEpoch = config.data.dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
      const settings = {
        temperature: config.loss.temperature ?? 0.1,
        bnGroups: bnGroups(ctx),
        freezePrototypesEpochs: options.freezePrototypesEpochs,
        queueStartStep: Math.round(options.queueStartEpoch * perEpoch),
      };
      const loss = lossOfKind<SwappedPredictionLoss>(ctx, ['swapped-prediction']);
      return new Swav(encoder, prototypes, queue, loss, settings, collectives);
    },
  });
}
