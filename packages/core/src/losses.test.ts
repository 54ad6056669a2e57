import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { MemoryBank, sampleIndices } from './bank.js';
import { KeyBatchInfoNceLoss, NceLoss, NtXentLoss } from './losses.js';
import { infoNceLogits, l2Normalize, nceLoss, ntXent } from './math.js';
import { Rng } from './rng.js';

/** SimCLR's Algorithm 1, transcribed: pairs (2k-1, 2k), l(i,j) = -log(e^{s_ij/t} / sum_{k != i} e^{s_ik/t}). */
function naiveNtXent(z1: number[][], z2: number[][], tau: number): number {
  const z: number[][] = [];
  z1.forEach((a, k) => z.push(a, z2[k]!)); // interleaved: 2k -> view 1, 2k+1 -> view 2
  const s = (i: number, j: number) => z[i]!.reduce((acc, v, d) => acc + v * z[j]![d]!, 0) / tau;
  const l = (i: number, j: number) => {
    let denom = 0;
    for (let k = 0; k < z.length; k++) if (k !== i) denom += Math.exp(s(i, k));
    return -Math.log(Math.exp(s(i, j)) / denom);
  };
  let total = 0;
  for (let k = 0; k < z1.length; k++) total += l(2 * k, 2 * k + 1) + l(2 * k + 1, 2 * k);
  return total / (2 * z1.length);
}

describe('NT-Xent', () => {
  it('is exactly log(2N - 1) when all embeddings are identical', () => {
    for (const n of [2, 5, 64]) {
      const u = l2Normalize(tf.ones([1, 4])) as tf.Tensor2D;
      const z = tf.tile(u, [n, 1]) as tf.Tensor2D;
      expect(ntXent(z, z, 0.5).loss.dataSync()[0]).toBeCloseTo(Math.log(2 * n - 1), 4);
    }
  });

  it('matches a naive loop transcribed from SimCLR on random tensors', () => {
    const rng = new Rng(3);
    const mk = () => l2Normalize(tf.tensor2d(rng.normalArray(6 * 8), [6, 8])) as tf.Tensor2D;
    const [z1, z2] = [mk(), mk()];
    const loss = new NtXentLoss().compute({
      query: z1,
      positive: z2,
      negatives: 'in-batch',
      temperature: 0.2,
    });
    expect(loss.loss.dataSync()[0]).toBeCloseTo(
      naiveNtXent(z1.arraySync() as number[][], z2.arraySync() as number[][], 0.2),
      4,
    );
  });

  it('scores accuracy 1 when each view is closest to its partner', () => {
    const z1 = tf.tensor2d([
      [1, 0],
      [0, 1],
    ]);
    const z2 = tf.tensor2d([
      [0.99, 0.141],
      [0.141, 0.99],
    ]);
    expect(
      new NtXentLoss()
        .compute({ query: z1, positive: z2, negatives: 'in-batch', temperature: 0.1 })
        .accuracy.dataSync()[0],
    ).toBe(1);
  });
});

describe('NCE (InstDisc)', () => {
  it('matches the formula on hand-picked numbers', () => {
    // one query, logits [pos, neg1, neg2] = [2, 0, ln 2]; Z = 4, N = 8: Pn K = 2/8
    const logits = tf.tensor2d([[2, 0, Math.log(2)]]);
    const p = [Math.exp(2) / 4, 1 / 4, 2 / 4];
    const kPn = 2 / 8;
    const expected = -(
      Math.log(p[0]! / (p[0]! + kPn)) +
      Math.log(kPn / (p[1]! + kPn)) +
      Math.log(kPn / (p[2]! + kPn))
    );
    expect(nceLoss(logits, Math.log(4), 8).dataSync()[0]).toBeCloseTo(expected, 4);
  });

  it('fixes the normaliser on the first batch as mean(exp(logits)) * N', () => {
    const loss = new NceLoss(100);
    const q = tf.tensor2d([[1, 0]]);
    const out = loss.compute({
      query: q,
      positive: q,
      negatives: tf.tensor2d([[0, 1]]),
      temperature: 1,
    });
    expect(loss.z).toBeCloseTo(((Math.E + 1) / 2) * 100, 3);
    expect(Number.isFinite(out.loss.dataSync()[0])).toBe(true);
    loss.compute({
      query: q,
      positive: tf.tensor2d([[0, 1]]),
      negatives: tf.tensor2d([[0, 1]]),
      temperature: 1,
    });
    expect(loss.z).toBeCloseTo(((Math.E + 1) / 2) * 100, 3); // unchanged
    const other = new NceLoss(100);
    other.loadState(loss.state());
    expect(other.z).toBe(loss.z);
    other.loadState({ tensors: {}, values: { z: 250 } }); // a checkpoint from before the log form
    expect(other.logZ).toBeCloseTo(Math.log(250), 12);
  });

  it('is finite at temperature 0.005 and matches a float64 evaluation of the same logits', () => {
    // unit queries, positives near them (cos ~0.9-0.99), random unit negatives: s up to 1/t = 200
    const [n, k, d, datasetSize, t] = [8, 64, 16, 512, 0.005];
    const rng = new Rng(5);
    const unit = (rows: number, noise?: tf.Tensor2D) =>
      tf.tidy(() => {
        const x = tf.tensor2d(rng.normalArray(rows * d), [rows, d]);
        return l2Normalize(noise ? tf.add(noise, tf.mul(x, 0.08)) : x) as tf.Tensor2D;
      });
    const query = unit(n);
    const positive = unit(n, query);
    const negatives = unit(k);
    const loss = new NceLoss(datasetSize);
    const out = loss.compute({ query, positive, negatives, temperature: t });
    const s = infoNceLogits(query, positive, negatives, t).arraySync(); // the same float32 logits

    // the paper's formula in plain float64 (exp(200) ~ 7e86 is fine in float64)
    const all = s.flat();
    const z = (all.reduce((acc, v) => acc + Math.exp(v), 0) / all.length) * datasetSize;
    const kPn = k / datasetSize;
    let total = 0;
    for (const row of s) {
      const p = row.map((v) => Math.exp(v) / z);
      total += Math.log(p[0]! / (p[0]! + kPn));
      for (let j = 1; j <= k; j++) total += Math.log(kPn / (p[j]! + kPn));
    }
    const expected = -total / n;

    expect(Math.max(...all)).toBeGreaterThan(150); // float32 exp overflows past 88
    const got = out.loss.dataSync()[0]!;
    expect(Number.isFinite(got)).toBe(true);
    expect(Math.abs(got - expected) / Math.abs(expected)).toBeLessThan(1e-4);
    expect(Math.abs(loss.logZ! - Math.log(z)) / Math.log(z)).toBeLessThan(1e-6);
    tf.dispose([query, positive, negatives, out.loss, out.accuracy]);
  });
});

describe('memory bank pieces', () => {
  it('sampling without the positives never returns them', () => {
    const rng = new Rng(1);
    const exclude = Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    for (let t = 0; t < 50; t++) {
      const s = sampleIndices(rng, 10, 100, exclude);
      expect(s.every((i) => i === 8 || i === 9)).toBe(true);
    }
    expect(new Set(sampleIndices(rng, 10, 500)).size).toBe(10); // without exclusions every row is reachable
    expect(() => sampleIndices(rng, 3, 1, [0, 1, 2])).toThrow(/all 3 rows are excluded/);
  });

  it('rows after one update equal the hand-computed normalised mix', () => {
    const bank = new MemoryBank(3, 2, new Rng(0));
    bank.loadState({
      tensors: {
        bank: tf.tensor2d([
          [1, 0],
          [0, 1],
          [0.6, 0.8],
        ]),
      },
      values: {},
    });
    bank.update(
      tf.tensor1d([2, 0], 'int32'),
      tf.tensor2d([
        [0, 1],
        [0, 1],
      ]),
      0.5,
    );
    const rows = bank.rows.arraySync() as number[][];
    // row 2: 0.5 (0.6, 0.8) + 0.5 (0, 1) = (0.3, 0.9) -> /sqrt(0.9); row 0: (0.5, 0.5) -> (1/sqrt2, 1/sqrt2)
    expect(rows[2]![0]).toBeCloseTo(0.3 / Math.sqrt(0.9), 6);
    expect(rows[2]![1]).toBeCloseTo(0.9 / Math.sqrt(0.9), 6);
    expect(rows[0]![0]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(rows[1]).toEqual([0, 1]);
  });
});

describe('KeyBatchInfoNceLoss (MoCo v3)', () => {
  it('is 2t log N when every query and key is the same unit vector', () => {
    const n = 8;
    const v = tf.tidy(() => tf.tile(tf.tensor2d([[0.6, 0.8]]), [n, 1])) as tf.Tensor2D;
    const out = new KeyBatchInfoNceLoss().compute({
      query: v,
      positive: v,
      negatives: 'in-batch',
      temperature: 0.2,
    });
    expect(out.loss.dataSync()[0]).toBeCloseTo(2 * 0.2 * Math.log(n), 5);
    tf.dispose([v, out.loss, out.accuracy]);
  });

  it('matches a hand computation: orthogonal pairs at t = 1 give 2 (log(1 + e) - 1)', () => {
    const q = tf.tensor2d([
      [1, 0],
      [0, 1],
    ]);
    const out = new KeyBatchInfoNceLoss().compute({
      query: q,
      positive: q,
      negatives: 'in-batch',
      temperature: 1,
    });
    expect(out.loss.dataSync()[0]).toBeCloseTo(2 * (Math.log(1 + Math.E) - 1), 5);
    expect(out.accuracy.dataSync()[0]).toBe(1);
    tf.dispose([q, out.loss, out.accuracy]);
  });
});
