import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  bnGroups,
  definePlugin,
  DinoCenter,
  dinoLossEntry,
  type DinoLoss,
  emaUpdateVariables,
  lossOfKind,
  MethodParts,
  MomentumKeyEncoder,
  PluginError,
  scheduledMomentum,
  teacherTemperature,
  throughCropGroups,
  type Encoder,
  type Method,
  type Plugin,
  type StepContext,
  type Views,
} from '@contrast/core';
import { DinoHead } from '@contrast/models';

export const PLUGIN_NAME = 'dino';

const width = (d: number, text: string) => z.number().int().positive().default(d).describe(text);

export const DinoConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    hiddenDim: width(2048, 'Hidden width of the DINO head (2048).'),
    bottleneckDim: width(256, "Width of the head's l2-normalised bottleneck (256)."),
    outDim: width(
      65536,
      'K: width of the weight-normalised last layer (65536; less on small data).',
    ),
    headLayers: width(3, "Linear layers of the head's MLP (3)."),
    momentum: z
      .number()
      .min(0)
      .max(1)
      .default(0.996)
      .describe("The teacher's EMA momentum at the start (0.996), rising to 1 on a cosine."),
    freezeLastLayerEpochs: z
      .number()
      .nonnegative()
      .default(1)
      .describe("Epochs the head's last layer stays frozen at the start (1 in DINO)."),
  })
  .strict();
export type DinoConfig = z.infer<typeof DinoConfigSchema>;

/** The teacher's outputs [N, K] of the global crops (no gradient). */
interface TeacherOutputs {
  teacher: tf.Tensor2D[];
}

/**
 * DINO (Caron et al. 2021, Algorithm 1; main_dino.py): a student (backbone +
 * DINO head) and a teacher (their EMA, no gradient). The teacher sees the global
 * crops (the first crop group), the student every crop; each network runs the
 * crops of one group as one batch (MultiCropWrapper: BatchNorm statistics over
 * the group's crops together, the global crops' for the teacher);
 *   loss = mean over (global crop iq, crop v != iq) of H(softmax((t_iq - c) / tau_t), s_v / tau_s)
 * then the teacher <- m teacher + (1 - m) student, c <- m_c c + (1 - m_c) mean(t).
 */
export class Dino extends MethodParts implements Method<TeacherOutputs> {
  readonly name = PLUGIN_NAME;
  readonly phases = {
    prepare: ['teacher'],
    objective: ['student', 'loss'],
    afterStep: ['ema', 'center'],
  };

  constructor(
    private readonly encoder: Encoder,
    private readonly head: DinoHead,
    private readonly teacher: MomentumKeyEncoder,
    private readonly teacherHead: DinoHead,
    private readonly center: DinoCenter,
    private readonly loss: DinoLoss,
    private readonly settings: {
      stepsPerEpoch: number;
      freezeLastLayerEpochs: number;
      /** BatchNorm groups the encoder splits a batch into (model.bnSplits on this worker). */
      bnGroups: number;
    },
    private readonly clock: { readonly step: number },
  ) {
    super({ teacher, teacher_head: teacherHead, head, center }); // checkpoint prefixes
  }

  parameterGroups() {
    const frozen = { epochs: this.settings.freezeLastLayerEpochs };
    return [
      { params: [...this.encoder.backboneParameters!(), ...this.head.mlpParameters()] },
      { params: [this.head.lastV], frozen },
    ];
  }

  private get epoch(): number {
    return Math.floor(this.clock.step / this.settings.stepsPerEpoch);
  }

  stepValues(): Record<string, number> {
    const tau = teacherTemperature(this.epoch, this.loss.settings);
    return { momentum: this.teacher.currentMomentum, teacher_temperature: tau };
  }

  prepare(views: Views, ctx: StepContext): TeacherOutputs {
    const net = this.teacher.keyEncoder;
    const global = views.groups.slice(0, 1);
    const features = throughCropGroups(
      (x) => net.features(x, true),
      views,
      this.settings.bnGroups,
      global,
    );
    const teacher = features.map((f) => this.teacherHead.apply(f, true)); // [N, K] per global crop
    ctx.mark('teacher');
    return { teacher };
  }

  objective(views: Views, { teacher }: TeacherOutputs, ctx: StepContext) {
    const features = throughCropGroups(
      (x) => this.encoder.features(x, true),
      views,
      this.settings.bnGroups,
    );
    // per crop: the same as MultiCropWrapper's one head pass over every crop, as the DINO
    // head has no BN (a BN head would need its statistics over all crops at once)
    const student = features.map((f) => this.head.apply(f, true)); // [N, K] per crop
    ctx.mark('student');
    const { loss } = this.loss.compute({
      student,
      teacher,
      center: this.center.center as tf.Tensor2D,
      epoch: this.epoch,
    });
    ctx.mark('loss');
    return { loss };
  }

  afterStep({ prepared }: { prepared: TeacherOutputs }, ctx: StepContext): void {
    const m = this.teacher.currentMomentum;
    this.teacher.afterStep();
    emaUpdateVariables(this.teacherHead.parameters(), this.head.parameters(), m);
    ctx.mark('ema');
    this.center.update(prepared.teacher);
    ctx.mark('center');
  }
}

export function dinoPlugin(): Plugin<DinoConfig> {
  return definePlugin({
    name: PLUGIN_NAME,
    description:
      'DINO: self-distillation with a momentum teacher, centring, sharpening, multi-crop',
    configSchema: DinoConfigSchema,
    loss: { default: PLUGIN_NAME, kind: 'dino' },
    losses: { [PLUGIN_NAME]: dinoLossEntry },
    build(ctx) {
      const { encoder, options: o, config } = ctx;
      if (!encoder.backboneParameters) {
        throw new PluginError(
          PLUGIN_NAME,
          `encoder '${encoder.name}' does not list its backbone's parameters`,
          {
            hint: 'give the encoder backboneParameters() (the DINO head trains on its features)',
          },
        );
      }
      const loss = lossOfKind<DinoLoss>(ctx, ['dino']);
      const sizes = { hiddenDim: o.hiddenDim, bottleneckDim: o.bottleneckDim, outDim: o.outDim };
      const head = new DinoHead(
        { inDim: encoder.featureDim, layers: o.headLayers, ...sizes },
        { rng: ctx.rng.fork() },
      );
      const teacher = new MomentumKeyEncoder(
        encoder,
        scheduledMomentum(o.momentum, 'cosine', ctx.clock),
      );
      const center = new DinoCenter(o.outDim, loss.settings.centerMomentum, ctx.collectives);
      const { batchSize } = config.optim;
      const perEpoch = (config.data.dropLast ? Math.floor : Math.ceil)(ctx.datasetSize / batchSize);
      const settings = {
        stepsPerEpoch: Math.max(1, perEpoch),
        freezeLastLayerEpochs: o.freezeLastLayerEpochs,
        bnGroups: bnGroups(ctx),
      };
      const teacherHead = head.clone({ trainable: false });
      return new Dino(encoder, head, teacher, teacherHead, center, loss, settings, ctx.clock);
    },
  });
}
