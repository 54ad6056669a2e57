import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { singleProcess, type Collectives } from './collectives.js';
import { DinoCenter, DinoLoss, dinoLoss, teacherTemperature } from './dino.js';
import { ContractError, StateError } from './errors.js';

const t2 = (rows: number[][]) => tf.tensor2d(rows);
const value = (s: tf.Scalar) => s.dataSync()[0]!;
const ZERO = t2([[0, 0]]);

/** The paper's pseudocode, term by term on the host: H(t, s) = -sum softmax(t) log softmax(s). */
function naiveDino(
  student: number[][][],
  teacher: number[][][],
  center: number[],
  tauS: number,
  tauT: number,
): number {
  const softmax = (x: number[]) => {
    const e = x.map((v) => Math.exp(v));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / z);
  };
  let total = 0;
  let terms = 0;
  teacher.forEach((t, iq) =>
    student.forEach((s, v) => {
      if (v === iq) return;
      let sum = 0;
      t.forEach((row, n) => {
        const q = softmax(row.map((x, k) => (x - center[k]!) / tauT));
        const p = softmax(s[n]!.map((x) => x / tauS));
        sum += -q.reduce((a, qk, k) => a + qk * Math.log(p[k]!), 0);
      });
      total += sum / t.length;
      terms++;
    }),
  );
  return total / terms;
}

describe('dinoLoss', () => {
  it('identical teacher and student, no centre, equal temperatures: the entropy', () => {
    // softmax([0, ln 3]) = [1/4, 3/4]: H = -(1/4 ln 1/4 + 3/4 ln 3/4)
    const t = t2([[0, Math.log(3)]]);
    const loss = dinoLoss({
      student: [t2([[9, 9]]), t], // crop 0 is the teacher's own: skipped
      teacher: [t],
      center: ZERO,
      studentTemperature: 1,
      teacherTemperature: 1,
    });
    expect(value(loss)).toBeCloseTo(-(0.25 * Math.log(0.25) + 0.75 * Math.log(0.75)), 5);
  });

  it('a 2-class hand value: the centre evens the teacher out, tau_s sharpens the student', () => {
    // (t - c) = [2, 0] - [1, -1] = [1, 1]: q = [1/2, 1/2]; s / 0.5 = [2 ln 3, 0]: p = [9/10, 1/10]
    const loss = dinoLoss({
      student: [t2([[0, 0]]), t2([[Math.log(3), 0]])],
      teacher: [t2([[2, 0]])],
      center: t2([[1, -1]]),
      studentTemperature: 0.5,
      teacherTemperature: 0.04,
    });
    expect(value(loss)).toBeCloseTo(-(0.5 * Math.log(0.9) + 0.5 * Math.log(0.1)), 5);
  });

  it('averages the batch mean over the pairs (iq, v != iq), as a naive loop over the crops', () => {
    const student = [
      [
        [1, 2, 0],
        [0, -1, 3],
      ],
      [
        [0.5, 0.5, 1],
        [2, 0, 0],
      ],
      [
        [-1, 0, 1],
        [1, 1, -2],
      ],
    ];
    const teacher = student.slice(0, 2).map((c) => c.map((r) => r.map((x) => x * 0.3 + 0.1)));
    const center = [0.2, -0.1, 0.05];
    const got = dinoLoss({
      student: student.map(t2),
      teacher: teacher.map(t2),
      center: t2([center]),
      studentTemperature: 0.1,
      teacherTemperature: 0.07,
    });
    expect(value(got)).toBeCloseTo(naiveDino(student, teacher, center, 0.1, 0.07), 4);
  });

  it('sends no gradient into the teacher or the centre; the student gets one', () => {
    const s1 = t2([[0.3, -0.2]]);
    const t = t2([[0.1, 0.4]]);
    const c = t2([[0.05, 0]]);
    const f = (s: tf.Tensor, teacher: tf.Tensor, center: tf.Tensor) =>
      dinoLoss({
        student: [t2([[0, 0]]), s as tf.Tensor2D],
        teacher: [teacher as tf.Tensor2D],
        center: center as tf.Tensor2D,
        studentTemperature: 0.1,
        teacherTemperature: 0.04,
      });
    const [gs, gt, gc] = tf.grads(f)([s1, t, c]);
    expect(Math.max(...gt!.abs().dataSync())).toBe(0);
    expect(Math.max(...gc!.abs().dataSync())).toBe(0);
    expect(Math.max(...gs!.abs().dataSync())).toBeGreaterThan(0.1);
  });

  it('refuses a student without a crop besides the teacher one, and outputs of another width', () => {
    const t = t2([[1, 2]]);
    const common = { center: ZERO, studentTemperature: 0.1, teacherTemperature: 0.04 };
    expect(() => dinoLoss({ ...common, student: [t], teacher: [t] })).toThrow(ContractError);
    expect(() => dinoLoss({ ...common, student: [t, t2([[1, 2, 3]])], teacher: [t] })).toThrow(
      /different widths/,
    );
  });

  it('leaks no tensor', () => {
    const s = [t2([[1, 2]]), t2([[0, 1]])];
    const before = tf.memory().numTensors;
    const loss = dinoLoss({
      student: s,
      teacher: [s[0]!],
      center: ZERO,
      studentTemperature: 0.1,
      teacherTemperature: 0.04,
    });
    expect(tf.memory().numTensors).toBe(before + 1); // the returned scalar only
    loss.dispose();
  });
});

describe('teacherTemperature', () => {
  const paper = {
    warmupTeacherTemperature: 0.04,
    teacherTemperature: 0.07,
    warmupTeacherEpochs: 30,
  };

  it("is np.linspace(0.04, 0.07, 30) over the warm-up, then 0.07 (DINOLoss's schedule)", () => {
    expect(teacherTemperature(0, paper)).toBeCloseTo(0.04, 10);
    expect(teacherTemperature(10, paper)).toBeCloseTo(0.04 + (0.03 * 10) / 29, 10);
    expect(teacherTemperature(29, paper)).toBeCloseTo(0.07, 10);
    expect(teacherTemperature(30, paper)).toBe(0.07);
    expect(teacherTemperature(99, paper)).toBe(0.07);
  });

  it('without a warm-up is the final value; a 1-epoch warm-up holds the start value for epoch 0', () => {
    expect(teacherTemperature(0, { ...paper, warmupTeacherEpochs: 0 })).toBe(0.07);
    expect(teacherTemperature(0, { ...paper, warmupTeacherEpochs: 1 })).toBe(0.04);
    expect(teacherTemperature(1, { ...paper, warmupTeacherEpochs: 1 })).toBe(0.07);
  });

  it('DinoLoss reads it at the epoch it is given', () => {
    const loss = new DinoLoss({ ...paper, studentTemperature: 1, centerMomentum: 0.9 });
    const t = t2([[0, Math.log(3)]]);
    const at = (epoch: number) =>
      value(loss.compute({ student: [t, t], teacher: [t], center: ZERO, epoch }).loss);
    // tau_t 0.07 sharpens the teacher more than 0.04 does not: the cross-entropy differs
    const q = (tau: number) => {
      const a = Math.exp(0),
        b = Math.exp(Math.log(3) / tau);
      return [a / (a + b), b / (a + b)];
    };
    const h = (tau: number) => -(q(tau)[0]! * Math.log(0.25) + q(tau)[1]! * Math.log(0.75));
    expect(at(0)).toBeCloseTo(h(0.04), 4);
    expect(at(40)).toBeCloseTo(h(0.07), 4);
  });
});

describe('DinoCenter', () => {
  it('c <- 0.9 c + 0.1 mean of every global crop output, from zero', () => {
    const c = new DinoCenter(2, 0.9);
    const crops = [
      t2([
        [1, 2],
        [3, 4],
      ]),
      t2([
        [5, 6],
        [7, 8],
      ]),
    ];
    c.update(crops); // mean [4, 5]
    expect(Array.from(c.center.dataSync())).toEqual([
      expect.closeTo(0.4, 6),
      expect.closeTo(0.5, 6),
    ]);
    c.update(crops);
    expect(Array.from(c.center.dataSync())).toEqual([
      expect.closeTo(0.76, 6),
      expect.closeTo(0.95, 6),
    ]);
    c.dispose();
  });

  it("data-parallel: the batch mean is the workers' all-reduced mean", () => {
    // a worker whose peer's batch mean is [2, 0]: the global mean of [4, 5] and [2, 0] is [3, 2.5]
    const peer: Collectives = {
      ...singleProcess,
      worldSize: 2,
      allReduceMean: (ts) => ts.map((t) => tf.div(tf.add(t, tf.tensor2d([[2, 0]])), 2)),
    };
    const c = new DinoCenter(2, 0.5, peer);
    c.update([t2([[4, 5]])]);
    expect(Array.from(c.center.dataSync())).toEqual([1.5, 1.25]);
    c.dispose();
  });

  it('round-trips through its state; refuses a centre of another width; leaks nothing', () => {
    const a = new DinoCenter(3, 0.9);
    a.update([t2([[1, 2, 3]])]);
    const b = new DinoCenter(3, 0.9);
    b.loadState(a.state());
    expect(Array.from(b.center.dataSync())).toEqual(Array.from(a.center.dataSync()));
    const before = tf.memory().numTensors;
    b.update([t2([[0, 0, 0]])].map((t) => tf.keep(t)));
    expect(tf.memory().numTensors).toBe(before + 1); // the kept input only
    const wide = new DinoCenter(4, 0.9);
    expect(() => wide.loadState(a.state())).toThrow(StateError);
    [a, b, wide].forEach((c) => c.dispose());
  });
});
