import type * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  bnGroups,
  definePlugin,
  MethodParts,
  regressionLoss,
  stopGradient,
  symmetrize,
  type Encoder,
  type Head,
  type Method,
  type ParameterGroup,
  type Plugin,
  type RegressionLoss,
  type StepContext,
  type Views,
} from '@contrast/core';
import { createPredictor } from '@contrast/models';

export const PLUGIN_NAME = 'simsiam';

export const SimSiamConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    predictorHidden: z
      .number()
      .int()
      .positive()
      .default(512)
      .describe(
        "Hidden width of the predictor's bottleneck (512 for a 2048-d projection in SimSiam).",
      ),
    fixPredictorLr: z
      .boolean()
      .default(true)
      .describe(
        "Keep the predictor's lr at optim.lr instead of following the schedule (SimSiam's --fix-pred-lr).",
      ),
    stopGradient: z
      .boolean()
      .default(true)
      .describe(
        "false: the paper's ablation (Figure 2) without the stop-gradient, whose outputs collapse.",
      ),
  })
  .strict();
export type SimSiamConfig = z.infer<typeof SimSiamConfigSchema>;

/**
 * SimSiam (Chen & He 2021, Algorithm 1): one encoder f (backbone + projector)
 * for both views, a predictor h, no negatives and no momentum encoder:
 *   z1, z2 = f(x1), f(x2);  p1, p2 = h(z1), h(z2)
 *   L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2,  D(p, z) = -cos(p, z)
 * The stop-gradient sg(.) is what prevents collapse. Nothing happens after the step.
 */
export class SimSiam extends MethodParts implements Method<undefined> {
  readonly name = PLUGIN_NAME;
  readonly phases = { prepare: [], objective: ['forward', 'loss'], afterStep: [] };

  constructor(
    private readonly encoder: Encoder,
    private readonly predictor: Head,
    private readonly loss: RegressionLoss,
    private readonly options: {
      symmetric: boolean;
      fixPredictorLr: boolean;
      stopGradient: boolean;
    },
  ) {
    super({ predictor }); // checkpointed as predictor/...
  }

  parameterGroups(): ParameterGroup[] {
    return [
      { params: this.encoder.parameters() },
      { params: this.predictor.parameters(), fixedLr: this.options.fixPredictorLr },
    ];
  }

  prepare(): undefined {
    return undefined;
  }

  objective(views: Views, _prepared: undefined, ctx: StepContext) {
    const z1 = this.encoder.project(views.x1, true); // [N, D]
    const z2 = this.encoder.project(views.x2, true);
    const p1 = this.predictor.apply(z1, true);
    const p2 = this.predictor.apply(z2, true);
    ctx.mark('forward');
    const sg = this.options.stopGradient ? stopGradient : (z: tf.Tensor2D) => z;
    const term = (prediction: tf.Tensor2D, target: tf.Tensor2D) => ({
      loss: this.loss.compute({ prediction, target: sg(target) }).loss,
    });
    const out = this.options.symmetric
      ? symmetrize((d) => (d === 0 ? term(p1, z2) : term(p2, z1)), 'mean')
      : term(p1, z2);
    ctx.mark('loss');
    return out;
  }

  afterStep(): void {}
}

export function simsiamPlugin(): Plugin<SimSiamConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description:
      'SimSiam: predictor + stop-gradient, negative cosine, no negatives, no momentum encoder',
    configSchema: SimSiamConfigSchema,
    loss: { default: 'negative-cosine', kind: 'regression', symmetric: true },
    build(ctx) {
      const { encoder, options } = ctx;
      const predictor = createPredictor(
        encoder.embedDim,
        options.predictorHidden,
        ctx.rng.fork(),
        bnGroups(ctx),
      );
      return new SimSiam(encoder, predictor, regressionLoss(ctx), {
        symmetric: ctx.config.loss.symmetric ?? true,
        fixPredictorLr: options.fixPredictorLr,
        stopGradient: options.stopGradient,
      });
    },
  });
}
