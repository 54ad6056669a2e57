import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  bnGroups,
  contrastiveLoss,
  defineLoss,
  definePlugin,
  KeyQueue,
  l2Normalize,
  MethodParts,
  nearestNeighbours,
  NeighbourInfoNceLoss,
  symmetrize,
  type Collectives,
  type ContrastiveLoss,
  type Encoder,
  type Head,
  type Method,
  type Plugin,
  type StepContext,
  type Views,
} from '@contrast/core';
import { createPredictor } from '@contrast/models';

export const PLUGIN_NAME = 'nnclr';

export const NnclrConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    queueSize: z
      .number()
      .int()
      .positive()
      .default(98304)
      .describe('Support set size: embeddings in the FIFO queue (98304 in NNCLR on ImageNet).'),
    predictorHidden: z
      .number()
      .int()
      .positive()
      .default(4096)
      .describe(
        'Hidden width of the predictor MLP (4096 in NNCLR; scaled down for small encoders).',
      ),
  })
  .strict();
export type NnclrConfig = z.infer<typeof NnclrConfigSchema>;

/**
 * NNCLR (Dwibedi et al. 2021, Algorithm 1): one encoder f (backbone +
 * projector), a predictor g, a support set Q (FIFO queue of past embeddings):
 *   z1, z2 = f(x1), f(x2);  p1, p2 = g(z1), g(z2)
 *   nn1, nn2 = NN(z1, Q), NN(z2, Q)          (cosine; no gradient)
 *   L = L(nn1, p2) / 2 + L(nn2, p1) / 2      (InfoNCE, temperature 0.1)
 *   Q <- enqueue(Q, normalize(z1))           (after the step)
 * Data-parallel: the candidates are every worker's predictions (gathered with
 * gradient) and every worker's z1 is enqueued in rank order (MoCo's
 * concat_all_gather), so the queues stay identical.
 */
export class Nnclr extends MethodParts implements Method<undefined> {
  readonly name = PLUGIN_NAME;
  readonly phases = {
    prepare: [],
    objective: ['forward', 'neighbours', 'loss'],
    afterStep: ['enqueue'],
  };

  constructor(
    private readonly encoder: Encoder,
    private readonly predictor: Head,
    private readonly support: KeyQueue,
    private readonly loss: ContrastiveLoss,
    private readonly options: { temperature: number; symmetric: boolean },
    private readonly collectives: Collectives,
  ) {
    super({ predictor, support }); // checkpointed as predictor/... and support/...
  }

  parameterGroups() {
    return [{ params: [...this.encoder.parameters(), ...this.predictor.parameters()] }];
  }

  chanceLoss(batchSize: number): number | undefined {
    return this.loss.chance?.({ batchSize, temperature: this.options.temperature });
  }

  prepare(): undefined {
    return undefined;
  }

  objective(views: Views, _prepared: undefined, ctx: StepContext) {
    const z1 = this.encoder.project(views.x1, true); // [N, D]
    const z2 = this.encoder.project(views.x2, true);
    const p1 = l2Normalize(this.predictor.apply(z1, true));
    const p2 = l2Normalize(this.predictor.apply(z2, true));
    ctx.mark('forward');
    const nn1 = this.neighbour(z1);
    const nn2 = this.neighbour(z2);
    ctx.mark('neighbours');
    const out = this.options.symmetric
      ? symmetrize((d) => (d === 0 ? this.term(views, nn1, p2) : this.term(views, nn2, p1)), 'mean')
      : this.term(views, nn1, p2);
    ctx.mark('loss');
    return { ...out, carry: { support: l2Normalize(z1) } };
  }

  /**
   * NN(z, Q), the positive: for each row of z [N, D] the support row of largest
   * cosine similarity, L2-normalised, [N, D]. A row of the support set: no
   * gradient reaches z (or Q) through it, as the paper's support set of past embeddings.
   */
  neighbour(z: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => l2Normalize(nearestNeighbours(z, this.support.keys).neighbours));
  }

  /** L(nn, p): the neighbours as queries, the other view's predictions as candidates. */
  private term(views: Views, nn: tf.Tensor2D, p: tf.Tensor2D) {
    const c = this.collectives;
    const batch =
      c.worldSize > 1
        ? {
            query: c.allGather(nn),
            positive: c.allGatherWithGradient(p),
            start: views.part?.start ?? c.rank * nn.shape[0],
          }
        : undefined;
    const { temperature } = this.options;
    const { loss, accuracy } = this.loss.compute({
      query: nn,
      positive: p,
      negatives: 'in-batch',
      temperature,
      ...(batch ? { batch } : {}),
    });
    return { loss, metrics: { pretext_accuracy: accuracy } };
  }

  afterStep({ carry }: { carry: Record<string, tf.Tensor> }, ctx: StepContext): void {
    const z1 = carry.support as tf.Tensor2D;
    const all = this.collectives.worldSize > 1 ? this.collectives.allGather(z1) : z1;
    this.support.enqueue(all);
    if (all !== z1) all.dispose();
    ctx.mark('enqueue');
  }
}

export function nnclrPlugin(): Plugin<NnclrConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description: 'NNCLR: nearest neighbour in a support queue as the positive, InfoNCE, predictor',
    configSchema: NnclrConfigSchema,
    loss: { default: 'nnclr', kind: 'in-batch', temperature: 0.1, symmetric: true },
    losses: { nnclr: defineLoss({ kind: 'in-batch', create: () => new NeighbourInfoNceLoss() }) },
    build(ctx) {
      const { encoder, options } = ctx;
      const predictor = createPredictor(
        encoder.embedDim,
        options.predictorHidden,
        ctx.rng.fork(),
        bnGroups(ctx),
      );
      const support = new KeyQueue(options.queueSize, encoder.embedDim, ctx.rng.fork());
      const { temperature = 0.1, symmetric = true } = ctx.config.loss;
      const settings = { temperature, symmetric };
      return new Nnclr(
        encoder,
        predictor,
        support,
        contrastiveLoss(ctx),
        settings,
        ctx.collectives,
      );
    },
  });
}
