import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { singleProcess, type Collectives } from './collectives.js';
import type { Loss, StateTensors } from './contracts.js';
import { ContractError, StateError } from './errors.js';
import { ema } from './math.js';
import { stopGradient } from './method.js';
import { defineLoss } from './plugin.js';

/**
 * DINO's self-distillation (Caron et al. 2021, "Emerging Properties in
 * Self-Supervised Vision Transformers", Algorithm 1 and the official
 * main_dino.py's DINOLoss): pure functions of their inputs, and the centre as a
 * part with state. Shapes: N = batch, K = the head's output width.
 */

/** The options of the 'dino' loss (`loss: { name: dino, ... }`), main_dino.py's defaults. */
export const DinoLossOptionsSchema = z
  .object({
    studentTemperature: z.number().positive().default(0.1).describe('tau_s (0.1 in DINO).'),
    teacherTemperature: z
      .number()
      .positive()
      .default(0.04)
      .describe(
        'tau_t after the warm-up (0.04 in main_dino.py; 0.07 in the paper with a warm-up).',
      ),
    warmupTeacherTemperature: z
      .number()
      .positive()
      .default(0.04)
      .describe('tau_t at the first epoch, rising linearly to teacherTemperature (0.04).'),
    warmupTeacherEpochs: z
      .number()
      .int()
      .nonnegative()
      .default(0)
      .describe(
        "Epochs of the teacher temperature's warm-up (0 in main_dino.py, 30 in the paper).",
      ),
    centerMomentum: z
      .number()
      .min(0)
      .max(1)
      .default(0.9)
      .describe("m of the centre's EMA of the teacher's batch mean (0.9)."),
  })
  .strict();

/** DINO's temperatures and centre momentum (tau_s, tau_t with its warm-up, m of the centre). */
export type DinoSettings = z.infer<typeof DinoLossOptionsSchema>;

/**
 * The teacher's temperature at `epoch` (0-based, whole epochs), as DINOLoss's
 * `teacher_temp_schedule`: np.linspace(warmup, final, W) over the first W
 * epochs (both ends included), then `final`. W = 0 or 1: `final` / `warmup` at epoch 0.
 */
export function teacherTemperature(
  epoch: number,
  s: Pick<DinoSettings, 'teacherTemperature' | 'warmupTeacherTemperature' | 'warmupTeacherEpochs'>,
): number {
  const w = s.warmupTeacherEpochs;
  if (epoch >= w) return s.teacherTemperature;
  if (w === 1) return s.warmupTeacherTemperature;
  return (
    s.warmupTeacherTemperature +
    ((s.teacherTemperature - s.warmupTeacherTemperature) * epoch) / (w - 1)
  );
}

/** What dinoLoss compares: the student's outputs of every crop, the teacher's of the global ones. */
export interface DinoLossInput {
  /** [N, K] per crop, global crops first (the student sees every crop; with gradient). */
  student: readonly tf.Tensor2D[];
  /** [N, K] per global crop, in the same order as the student's first ones (no gradient). */
  teacher: readonly tf.Tensor2D[];
  /** [1, K] the centre c subtracted from the teacher's outputs. */
  center: tf.Tensor2D;
  studentTemperature: number;
  teacherTemperature: number;
}

/**
 * DINO's loss (DINOLoss.forward): the mean over the pairs (teacher crop iq,
 * student crop v != iq) of the batch mean of
 *   H(P_t, P_s) = -sum_k softmax((t_iq - c) / tau_t)_k log_softmax(s_v / tau_s)_k.
 * The teacher's side, centre included, carries no gradient (`.detach()` in the official code).
 * With one teacher output t and the student's s = t, c = 0 and tau_s = tau_t the
 * term is the entropy of softmax(t / tau).
 * @throws ContractError when the student has no crop besides the teacher's or the widths differ.
 */
export function dinoLoss(input: DinoLossInput): tf.Scalar {
  const { student, teacher, center } = input;
  const k = center.shape[1];
  if (student.length < 2 || teacher.length < 1 || teacher.length > student.length) {
    throw new ContractError(
      `dinoLoss: ${student.length} student and ${teacher.length} teacher outputs`,
      { hint: 'pass the student every crop (global first) and the teacher 1..#global crops' },
    );
  }
  if ([...student, ...teacher].some((t) => t.shape[1] !== k)) {
    throw new ContractError(`dinoLoss: outputs and centre of different widths (centre ${k})`, {
      hint: "the student's and the teacher's heads must have the centre's output width",
    });
  }
  return tf.tidy(() => {
    const logP = student.map((s) => tf.logSoftmax(tf.div(s, input.studentTemperature))); // [N, K]
    const q = teacher.map((t) =>
      stopGradient(tf.softmax(tf.div(tf.sub(t, center), input.teacherTemperature))),
    );
    const terms: tf.Scalar[] = [];
    q.forEach((qi, iq) =>
      logP.forEach((lp, v) => {
        if (v !== iq) terms.push(tf.mean(tf.neg(tf.sum(tf.mul(qi, lp), 1))));
      }),
    );
    return tf.div(tf.addN(terms), terms.length) as tf.Scalar;
  });
}

/**
 * DINO's centre c [1, K] (DINOLoss.update_center), zero at the start: after
 * each step, without gradient,
 *   c <- m c + (1 - m) mean over the batch's teacher outputs of every global crop.
 * Data-parallel: the batch mean is the global batch's (the official code's
 * dist.all_reduce of batch_center), an all-reduce mean of the workers' equal slices.
 */
export class DinoCenter {
  readonly center: tf.Variable;

  constructor(
    readonly width: number,
    private readonly momentum: number,
    private readonly collectives: Collectives = singleProcess,
  ) {
    this.center = tf.variable(tf.zeros([1, width]), false);
  }

  /** Moves the centre towards the batch mean of `teacher` ([N, K] per global crop). */
  update(teacher: readonly tf.Tensor2D[]): void {
    tf.tidy(() => {
      const local = tf.mean(tf.concat(teacher as tf.Tensor2D[], 0), 0, true); // [1, K]
      const [batchCenter] = this.collectives.allReduceMean([local]);
      this.center.assign(ema<tf.Tensor>(this.center, batchCenter!, this.momentum));
    });
  }

  state(): StateTensors {
    return { tensors: { center: this.center }, values: {} };
  }

  /** @throws StateError when the checkpoint has no centre of this width. */
  loadState(state: StateTensors): void {
    const c = state.tensors.center;
    if (!c || c.shape.join() !== this.center.shape.join()) {
      throw new StateError(`checkpoint lacks a [1, ${this.width}] DINO centre`, {
        hint: 'resume with the strategy.outDim the run was trained with',
      });
    }
    this.center.assign(c);
  }

  dispose(): void {
    this.center.dispose();
  }
}

/**
 * The 'dino' loss (kind 'dino'): dinoLoss with its settings, the teacher's
 * temperature read from the schedule at the given epoch.
 */
export class DinoLoss implements Loss {
  readonly name = 'dino';
  readonly kind = 'dino';

  constructor(readonly settings: DinoSettings) {}

  compute(
    input: Omit<DinoLossInput, 'studentTemperature' | 'teacherTemperature'> & { epoch: number },
  ) {
    const { studentTemperature } = this.settings;
    const tau = teacherTemperature(input.epoch, this.settings);
    return { loss: dinoLoss({ ...input, studentTemperature, teacherTemperature: tau }) };
  }
}

/** The 'dino' loss entry of a plugin's `losses`: kind 'dino', DinoLossOptionsSchema's options. */
export const dinoLossEntry = defineLoss({
  kind: 'dino',
  options: DinoLossOptionsSchema,
  create: (_context, options) => new DinoLoss(options),
});
