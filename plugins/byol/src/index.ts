import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  bnGroups,
  definePlugin,
  MethodParts,
  MomentumKeyEncoder,
  regressionLoss,
  scheduledMomentum,
  symmetrize,
  type Encoder,
  type Head,
  type Method,
  type Plugin,
  type RegressionLoss,
  type StepContext,
  type Views,
} from '@contrast/core';
import { createPredictor } from '@contrast/models';

export const PLUGIN_NAME = 'byol';

export const ByolConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    momentum: z
      .number()
      .min(0)
      .max(1)
      .default(0.996)
      .describe("tau_base: the target's EMA momentum at the start (0.996 in BYOL), rising to 1."),
    momentumSchedule: z
      .enum(['cosine', 'fixed'])
      .default('cosine')
      .describe("'cosine' (BYOL: tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2) or 'fixed'."),
    predictorHidden: z
      .number()
      .int()
      .positive()
      .default(4096)
      .describe(
        'Hidden width of the predictor MLP (4096 in BYOL; scaled down for small encoders).',
      ),
  })
  .strict();
export type ByolConfig = z.infer<typeof ByolConfigSchema>;

/** The target's projections of both views, [N, D] each, L2-normalised, without gradient. */
interface Targets {
  t1: tf.Tensor2D;
  t2: tf.Tensor2D;
}

/**
 * BYOL (Grill et al. 2020, Algorithm 1): the online network (encoder, projector,
 * predictor q) predicts the target network's projection of the other view; the
 * target is an EMA of the online encoder and projector (no predictor, no
 * gradient). loss = L(q(z1), sg(z2')) + L(q(z2), sg(z1')) with L the normalised
 * MSE 2 - 2 cos; after the optimizer step xi <- tau xi + (1 - tau) theta.
 */
export class Byol extends MethodParts implements Method<Targets> {
  readonly name = PLUGIN_NAME;
  readonly phases = { prepare: ['target'], objective: ['online', 'loss'], afterStep: ['ema'] };

  constructor(
    private readonly encoder: Encoder,
    private readonly predictor: Head,
    private readonly target: MomentumKeyEncoder,
    private readonly loss: RegressionLoss,
    private readonly symmetric: boolean,
  ) {
    super({ target, predictor }); // checkpointed as target/... and predictor/...
  }

  parameterGroups() {
    return [{ params: [...this.encoder.parameters(), ...this.predictor.parameters()] }];
  }

  stepValues(): Record<string, number> {
    return { momentum: this.target.currentMomentum };
  }

  prepare(views: Views, ctx: StepContext): Targets {
    const targets = { t1: this.target.encode(views.x1), t2: this.target.encode(views.x2) };
    ctx.mark('target');
    return targets;
  }

  objective(views: Views, { t1, t2 }: Targets, ctx: StepContext) {
    const predict = (x: tf.Tensor4D) => this.predictor.apply(this.encoder.project(x, true), true);
    const p1 = predict(views.x1); // [N, D]
    const p2 = this.symmetric ? predict(views.x2) : undefined;
    ctx.mark('online');
    const term = (prediction: tf.Tensor2D, target: tf.Tensor2D) => ({
      loss: this.loss.compute({ prediction, target }).loss,
    });
    const out = p2 ? symmetrize((d) => (d === 0 ? term(p1, t2) : term(p2, t1))) : term(p1, t2);
    ctx.mark('loss');
    return out;
  }

  afterStep(_input: unknown, ctx: StepContext): void {
    this.target.afterStep();
    ctx.mark('ema');
  }
}

export function byolPlugin(): Plugin<ByolConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description: 'BYOL: online predictor, momentum target (cosine schedule), normalised MSE',
    configSchema: ByolConfigSchema,
    loss: { default: 'normalized-mse', kind: 'regression', symmetric: true },
    build(ctx) {
      const { encoder, options } = ctx;
      const predictor = createPredictor(
        encoder.embedDim,
        options.predictorHidden,
        ctx.rng.fork(),
        bnGroups(ctx),
      );
      const momentum = scheduledMomentum(options.momentum, options.momentumSchedule, ctx.clock);
      const target = new MomentumKeyEncoder(encoder, momentum);
      const symmetric = ctx.config.loss.symmetric ?? true;
      return new Byol(encoder, predictor, target, regressionLoss(ctx), symmetric);
    },
  });
}
