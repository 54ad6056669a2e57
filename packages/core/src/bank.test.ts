import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { MemoryBank, sampleIndices } from './bank.js';
import { Rng } from './rng.js';
import { BankSource } from './sources.js';

const rows = (bank: MemoryBank) => bank.rows.arraySync() as number[][];
const bankOf = (values: number[][]) => {
  const bank = new MemoryBank(values.length, values[0]!.length, new Rng(0));
  bank.loadState({ tensors: { bank: tf.tensor2d(values) }, values: {} });
  return bank;
};

describe('MemoryBank: a row named twice in one step (a two-way loss)', () => {
  it('is written once, towards the mean of its features (hand-computed)', () => {
    const bank = bankOf([
      [1, 0],
      [0, 1],
      [0.6, 0.8],
    ]);
    const f = tf.tensor2d([
      [0, 1],
      [0, 1],
      [1, 0],
    ]);
    bank.update(Int32Array.from([2, 0, 2]), f, 0.5);
    const r = rows(bank);
    // row 2: 0.5 (0.6, 0.8) + 0.5 mean((0, 1), (1, 0)) = (0.55, 0.65) -> / sqrt(0.725)
    expect(r[2]![0]).toBeCloseTo(0.55 / Math.sqrt(0.725), 6);
    expect(r[2]![1]).toBeCloseTo(0.65 / Math.sqrt(0.725), 6);
    // row 0 named once: 0.5 (1, 0) + 0.5 (0, 1) -> (1/sqrt2, 1/sqrt2)
    expect(r[0]![0]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(r[0]![1]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(r[1]).toEqual([0, 1]);
    f.dispose();
    bank.dispose();
  });

  it('a two-way step [q1; q2] on [i; i] equals one write of (q1 + q2) / 2, and leaks nothing', () => {
    const start = [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ];
    const twice = bankOf(start);
    const once = bankOf(start);
    const q1 = tf.tensor2d([
      [0.6, 0.8, 0],
      [0, 0.6, 0.8],
    ]);
    const q2 = tf.tensor2d([
      [0, 0.8, 0.6],
      [0.8, 0, 0.6],
    ]);
    const both = tf.concat([q1, q2]);
    const mean = tf.div(tf.add(q1, q2), 2) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    twice.update(Int32Array.from([2, 0, 2, 0]), both, 0.5);
    expect(tf.memory().numTensors).toBe(before);
    once.update(Int32Array.from([2, 0]), mean, 0.5);
    const a = rows(twice).flat();
    rows(once)
      .flat()
      .forEach((v, i) => expect(a[i]).toBeCloseTo(v, 6));
    tf.dispose([q1, q2, both, mean]);
    twice.dispose();
    once.dispose();
  });
});

describe('BankSource.keys has no side effect', () => {
  const options = { negatives: 4, momentum: 0.5, excludePositives: true };
  const streamOf = (s: BankSource) => s.state().values.negatives_rng as number[];

  it('two calls give the same keys and leave the stream; afterStep moves it past one draw', () => {
    const source = new BankSource('bank', options, 10, 3, new Rng(1));
    const start = streamOf(source);
    const indexArray = Int32Array.from([0, 1]);
    const indices = tf.tensor1d(indexArray, 'int32');
    const query = tf.tensor2d([
      [1, 0, 0],
      [0, 1, 0],
    ]);
    const input = { query, key: undefined, indices, indexArray };
    const a = source.keys(input);
    const b = source.keys(input);
    expect(streamOf(source)).toEqual(start);
    // the negatives are the bank's rows at one draw of K from the stream as it stood
    const drawn = sampleIndices(new Rng(start), 10, 4, indexArray);
    const expected = source.bank.gather(drawn);
    expect((a.negatives as tf.Tensor2D).arraySync()).toEqual(expected.arraySync());
    expect((b.negatives as tf.Tensor2D).arraySync()).toEqual(expected.arraySync());
    expect(a.positive.arraySync()).toEqual(b.positive.arraySync());
    source.afterStep(input);
    const replay = new Rng(start);
    sampleIndices(replay, 10, 4, indexArray);
    expect(streamOf(source)).toEqual(replay.getState());
    tf.dispose([indices, query, expected, a.positive, b.positive, a.negatives, b.negatives]);
    source.dispose();
  });
});
