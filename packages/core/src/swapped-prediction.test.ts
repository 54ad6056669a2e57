import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { singleProcess } from './collectives.js';
import { ContractError, StateError } from './errors.js';
import { Rng } from './rng.js';
import {
  EmbeddingQueue,
  Prototypes,
  sinkhornKnopp,
  swappedPredictionLoss,
  swavLoss,
} from './swapped-prediction.js';

const rows = (t: tf.Tensor2D) => t.arraySync();

/** distributed_sinkhorn on one process, in float64, from the official code line by line. */
function naiveSinkhorn(scores: number[][], epsilon: number, iterations: number): number[][] {
  const b = scores.length;
  const k = scores[0]!.length;
  // Q[k][b] = exp(scores[b][k] / epsilon)
  let q = Array.from({ length: k }, (_, p) => scores.map((s) => Math.exp(s[p]! / epsilon)));
  const total = q.flat().reduce((a, x) => a + x, 0);
  q = q.map((r) => r.map((x) => x / total));
  for (let it = 0; it < iterations; it++) {
    q = q.map((r) => {
      const sum = r.reduce((a, x) => a + x, 0);
      return r.map((x) => x / sum / k);
    });
    const cols = Array.from({ length: b }, (_, j) => q.reduce((a, r) => a + r[j]!, 0));
    q = q.map((r) => r.map((x, j) => x / cols[j]! / b));
  }
  return Array.from({ length: b }, (_, j) => q.map((r) => r[j]! * b));
}

describe('sinkhornKnopp (SwAV codes)', () => {
  it('one iteration on a 2 x 2 case by hand', () => {
    // epsilon 1: Q = exp(log M)^T = [[1, 2], [3, 4]] (prototypes x samples); /10, rows to 1/2,
    // columns to 1/2, times 2: sample 0 -> [7/16, 9/16], sample 1 -> [7/13, 6/13]
    const scores = tf.log(
      tf.tensor2d([
        [1, 3],
        [2, 4],
      ]),
    ) as tf.Tensor2D;
    const q = sinkhornKnopp(scores, { epsilon: 1, iterations: 1 });
    const got = rows(q);
    const want = [
      [7 / 16, 9 / 16],
      [7 / 13, 6 / 13],
    ];
    got.forEach((r, i) => r.forEach((v, j) => expect(v).toBeCloseTo(want[i]![j]!, 6)));
    tf.dispose([scores, q]);
  });

  it('random scores: each sample sums to 1, prototypes tend to B/K; the official loop in float64', () => {
    const rng = new Rng(3);
    const [b, k] = [12, 4];
    const scores = tf.tidy(
      () => tf.clipByValue(tf.tensor2d(rng.normalArray(b * k, 0.5), [b, k]), -1, 1) as tf.Tensor2D,
    );
    const three = sinkhornKnopp(scores, { epsilon: 0.05, iterations: 3 });
    const want = naiveSinkhorn(rows(scores), 0.05, 3);
    rows(three).forEach((r, i) => {
      expect(r.reduce((a, x) => a + x, 0)).toBeCloseTo(1, 5);
      r.forEach((v, j) => expect(v).toBeCloseTo(want[i]![j]!, 4));
    });
    const many = sinkhornKnopp(scores, { epsilon: 0.05, iterations: 200 });
    const totals = tf.sum(many, 0).arraySync() as number[];
    // float32: exp(s / 0.05) spans e^+-20, so the totals settle within ~0.2% of B/K (float64: 1e-6)
    totals.forEach((t) => expect(Math.abs(t - b / k)).toBeLessThan(0.01));
    tf.dispose([scores, three, many]);
  });

  it('passes no gradient to the scores', () => {
    const scores = tf.tensor2d([
      [0.3, -0.2, 0.9],
      [0.1, 0.5, -0.4],
    ]);
    const weights = tf.tensor2d([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const g = tf.grad((s: tf.Tensor) =>
      tf.sum(tf.mul(sinkhornKnopp(s as tf.Tensor2D, { epsilon: 0.05, iterations: 3 }), weights)),
    )(scores);
    expect(Array.from(g.dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
    tf.dispose([scores, weights, g]);
  });

  it('refuses scores that are not [B, K] and out-of-range settings', () => {
    const s = tf.zeros([2, 3]) as tf.Tensor2D;
    expect(() => sinkhornKnopp(s, { epsilon: 0, iterations: 3 })).toThrow(ContractError);
    expect(() => sinkhornKnopp(s, { epsilon: 0.05, iterations: 0 })).toThrow(ContractError);
    s.dispose();
  });
});

describe('swappedPredictionLoss (SwAV)', () => {
  it('a hand case: 2 global crops with codes, 1 local crop, tau 0.5', () => {
    const tau = 0.5;
    // log softmax(s / tau): crop 0 [ln 1/2, ln 1/2], crop 1 [ln 3/4, ln 1/4], crop 2 [ln 1/4, ln 3/4]
    const s = [
      [0, 0],
      [Math.log(3) * tau, 0],
      [0, Math.log(3) * tau],
    ].map((r) => tf.tensor2d([r]));
    const q0 = tf.tensor2d([[0.5, 0.5]]);
    const q1 = tf.tensor2d([[1, 0]]);
    const loss = swappedPredictionLoss(
      s,
      [
        { crop: 0, codes: q0 },
        { crop: 1, codes: q1 },
      ],
      tau,
    );
    // crop 0's codes against crops 1 and 2: each -(ln 3/4 + ln 1/4) / 2
    const term0 = -(Math.log(0.75) + Math.log(0.25)) / 2;
    // crop 1's codes against crop 0 (ln 2) and crop 2 (ln 4)
    const term1 = (Math.log(2) + Math.log(4)) / 2;
    expect(loss.dataSync()[0]).toBeCloseTo((term0 + term1) / 2, 6);
    tf.dispose([...s, q0, q1, loss]);
  });

  it("the swav loss's gradient treats the codes as constants", () => {
    const rng = new Rng(5);
    const [b, k] = [6, 5];
    const make = () => tf.tensor2d(rng.normalArray(b * k, 0.3), [b, k]);
    const s = [make(), make(), make()];
    const loss = swavLoss({ epsilon: 0.05, iterations: 3 });
    const targets = (x: tf.Tensor2D[]) => [0, 1].map((crop) => ({ crop, scores: x[crop]! }));
    const g = tf.grads((...x: tf.Tensor[]) => {
      const xs = x as tf.Tensor2D[];
      return loss.compute({ scores: xs, targets: targets(xs), temperature: 0.1 }).loss;
    })(s);
    const codes = [0, 1].map((crop) => ({
      crop,
      codes: sinkhornKnopp(s[crop]!, { epsilon: 0.05, iterations: 3 }),
    }));
    const frozen = codes.map((c) => ({ crop: c.crop, codes: tf.tensor2d(rows(c.codes)) }));
    const want = tf.grads((...x: tf.Tensor[]) =>
      swappedPredictionLoss(x as tf.Tensor2D[], frozen, 0.1),
    )(s);
    g.forEach((gi, i) => {
      const a = gi.dataSync();
      const w = want[i]!.dataSync();
      a.forEach((v, j) => expect(v).toBeCloseTo(w[j]!, 6));
    });
    tf.dispose([...s, ...g, ...want, ...codes.map((c) => c.codes), ...frozen.map((c) => c.codes)]);
  });

  it('keeps only the last B rows of codes computed with queue rows', () => {
    const rng = new Rng(7);
    const [b, m, k] = [4, 8, 3];
    const batch = tf.tensor2d(rng.normalArray(b * k, 0.3), [b, k]);
    const queue = tf.tensor2d(rng.normalArray(m * k, 0.3), [m, k]);
    const other = tf.tensor2d(rng.normalArray(b * k, 0.3), [b, k]);
    const all = tf.concat([queue, batch]) as tf.Tensor2D;
    const got = swavLoss({ epsilon: 0.05, iterations: 3 }).compute({
      scores: [batch, other],
      targets: [{ crop: 0, scores: all }],
      temperature: 0.1,
    }).loss;
    const q = sinkhornKnopp(all, { epsilon: 0.05, iterations: 3 }).slice([m, 0], [b, k]);
    const want = swappedPredictionLoss([batch, other], [{ crop: 0, codes: q }], 0.1);
    expect(got.dataSync()[0]).toBeCloseTo(want.dataSync()[0]!, 6);
    tf.dispose([batch, queue, other, all, got, q, want]);
  });

  it('refuses one crop and codes of a crop that is not there', () => {
    const s = tf.zeros([2, 3]) as tf.Tensor2D;
    expect(() => swappedPredictionLoss([s], [{ crop: 0, codes: s }], 0.1)).toThrow(ContractError);
    expect(() => swappedPredictionLoss([s, s], [{ crop: 2, codes: s }], 0.1)).toThrow(
      ContractError,
    );
    s.dispose();
  });
});

describe('Prototypes and EmbeddingQueue', () => {
  it('normalize scales each prototype to unit length and keeps its direction', () => {
    const p = new Prototypes(3, 4, new Rng(1));
    const before = rows(p.weights);
    p.normalize();
    const after = rows(p.weights);
    for (let c = 0; c < 4; c++) {
      const norm = Math.hypot(...before.map((r) => r[c]!));
      const unit = Math.hypot(...after.map((r) => r[c]!));
      expect(unit).toBeCloseTo(1, 6);
      before.forEach((r, d) => expect(after[d]![c]!).toBeCloseTo(r[c]! / norm, 6));
    }
    p.dispose();
  });

  it('the queue is full after its length in rows; its state round-trips; bad state is refused', () => {
    const q = new EmbeddingQueue(6, 2, new Rng(2));
    q.enqueue(tf.ones([4, 2]));
    expect(q.full).toBe(false);
    q.enqueue(tf.fill([4, 2], 2));
    expect(q.full).toBe(true);
    const r = new EmbeddingQueue(6, 2, new Rng(9));
    r.loadState(q.state());
    expect(r.full).toBe(true);
    expect(r.rows.ptr).toBe(2);
    expect(rows(r.embeddings)).toEqual(rows(q.embeddings));
    const s = q.state();
    expect(() => r.loadState({ tensors: s.tensors, values: { ...s.values, enqueued: 7 } })).toThrow(
      StateError,
    );
    q.dispose();
    r.dispose();
  });

  it("data-parallel: enqueues every worker's rows, reads this worker's share", () => {
    // worker 1 of 2; the other worker's rows are this worker's + 10
    const collectives = {
      ...singleProcess,
      rank: 1,
      worldSize: 2,
      allGather: <T extends tf.Tensor>(x: T) => tf.concat([tf.add(x, 10), x]) as T,
    };
    const q = new EmbeddingQueue(4, 1, new Rng(2), collectives);
    const mine = tf.tensor2d([[1], [2]]);
    q.enqueue(mine);
    expect(q.full).toBe(true);
    expect(rows(q.embeddings)).toEqual([[11], [12], [1], [2]]);
    const share = q.workerRows();
    expect(rows(share)).toEqual([[1], [2]]);
    tf.dispose([mine, share]);
    q.dispose();
  });
});
