import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  ContrastiveMethod,
  infoNce,
  MomentumKeyEncoder,
  QueueSource,
  Rng,
  shuffleRows,
} from '@contrast/core';
import { disposeBatch } from '@contrast/data';
import {
  createCatalog,
  createStepHarness,
  maxAbsDiff,
  snapshotVariables,
  stepPhases,
} from '@contrast/trainer';
import { momentumQueuePlugin } from './index.js';

function harness(
  strategy: Record<string, unknown> = {},
  extra: { bnSplits?: number; symmetric?: boolean } = {},
) {
  const h = createStepHarness(
    {
      name: 'mq-test',
      data: { trainSubset: 512 },
      model: { encoder: 'convnet', width: 0.25, dim: 16, bnSplits: extra.bnSplits ?? 1 },
      strategy: { name: 'momentum-queue', queueSize: 40, momentum: 0.99, ...strategy },
      loss: { symmetric: extra.symmetric ?? false },
      optim: { batchSize: 16, lr: 0.05 },
    },
    createCatalog([momentumQueuePlugin()]),
  );
  const parts = (h.method as ContrastiveMethod).parts;
  return {
    ...h,
    parts,
    keyPolicy: parts.keyEncoder,
    source: parts.source,
    queue: (parts.source as QueueSource).queue,
    keyEncoder: (parts.keyEncoder as MomentumKeyEncoder).keyEncoder,
  };
}

describe('momentum-queue plugin', () => {
  it("marks the step's phases in order, once each, without changing the step", () => {
    const a = harness();
    const b = harness();
    const phases: string[] = [];
    const batchA = a.nextBatch();
    const batchB = b.nextBatch();
    const marked = a.stepOn(batchA, 0.05, (p) => phases.push(p));
    const plain = b.stepOn(batchB, 0.05);
    expect(phases).toEqual([
      'key_encoder',
      'query_forward',
      'logits_loss',
      'backward',
      'optimizer',
      'enqueue',
      'ema',
    ]);
    expect(marked.loss.dataSync()[0]).toBe(plain.loss.dataSync()[0]);
    expect(
      maxAbsDiff(
        snapshotVariables(a.encoder.parameters()),
        snapshotVariables(b.encoder.parameters()),
      ),
    ).toBe(0);
    expect(stepPhases(a.method)).toEqual(phases);
    tf.dispose([
      marked.loss,
      plain.loss,
      ...Object.values(marked.metrics),
      ...Object.values(plain.metrics),
    ]);
    disposeBatch(batchA);
    disposeBatch(batchB);
    a.dispose();
    b.dispose();
  });

  it('binds its parts through the container', () => {
    const h = harness();
    expect(h.source).toBeInstanceOf(QueueSource);
    expect(h.keyPolicy).toBeInstanceOf(MomentumKeyEncoder);
    expect(h.parts.loss.name).toBe('infonce');
    expect(h.config.loss).toMatchObject({ name: 'infonce', temperature: 0.1, symmetric: false });
    expect(h.queue.size).toBe(40);
    h.dispose();
  });

  it('cosine momentum schedule: m0 at the start, (1 + m0) / 2 half-way, 1 at the end', () => {
    const h = harness({ momentum: 0.99, momentumSchedule: 'cosine' });
    h.clock.total = 100;
    const m = (step: number) => {
      h.clock.step = step;
      return h.keyPolicy.currentMomentum;
    };
    expect(m(0)).toBeCloseTo(0.99, 12);
    expect(m(50)).toBeCloseTo(0.995, 12);
    expect(m(100)).toBeCloseTo(1, 12);
    h.dispose();
    const fixed = harness({ momentum: 0.99 });
    fixed.clock.total = 100;
    fixed.clock.step = 50;
    expect(fixed.keyPolicy.currentMomentum).toBe(0.99);
    fixed.dispose();
  });

  it('rejects a bad strategy section with the field named', () => {
    expect(() => harness({ queueSize: 0 })).toThrow(/strategy.queueSize/);
    expect(() => harness({ momentun: 0.9 })).toThrow(/did you mean 'momentum'/);
  });

  it('no gradient reaches the key encoder: with m = 1 it never changes while the query encoder trains', () => {
    const h = harness({ momentum: 1 });
    const key0 = snapshotVariables(h.keyEncoder.parameters());
    const q0 = snapshotVariables(h.encoder.parameters());
    for (let i = 0; i < 3; i++) h.step();
    expect(maxAbsDiff(snapshotVariables(h.keyEncoder.parameters()), key0)).toBe(0);
    expect(maxAbsDiff(snapshotVariables(h.encoder.parameters()), q0)).toBeGreaterThan(1e-4);
    h.dispose();
  });

  it('updates the key encoder as the EMA of the query encoder after the step (m = 0.5)', () => {
    const h = harness({ momentum: 0.5 });
    const key0 = snapshotVariables(h.keyEncoder.parameters());
    h.step();
    const q1 = snapshotVariables(h.encoder.parameters());
    const expected = key0.map((k, i) => k.map((v, j) => 0.5 * v + 0.5 * q1[i]![j]!));
    expect(maxAbsDiff(snapshotVariables(h.keyEncoder.parameters()), expected)).toBeLessThan(1e-6);
    h.dispose();
  });

  it('enqueues the batch keys after computing the loss, wrapping around K = 40', () => {
    const h = harness();
    for (let i = 0; i < 3; i++) {
      const b = h.nextBatch();
      const before = h.queue.keys.arraySync() as number[][];
      const ptr = h.queue.ptr;
      const keyEmb = h.keyPolicy.encode(b.x2)!; // BN batch statistics: the keys the step computes
      const out = h.stepOn(b, 0.05);
      tf.dispose([out.loss, ...Object.values(out.metrics)]);
      const after = h.queue.keys.arraySync() as number[][];
      (keyEmb.arraySync() as number[][]).forEach((row, j) =>
        row.forEach((v, d) => expect(after[(ptr + j) % 40]![d]).toBeCloseTo(v, 2)),
      );
      for (let r = 0; r < 40; r++)
        if ((r - ptr + 40) % 40 >= 16) expect(after[r]).toEqual(before[r]);
      expect(h.queue.ptr).toBe((ptr + 16) % 40);
      tf.dispose([keyEmb]);
      disposeBatch(b);
    }
    h.dispose();
  });

  it('key shuffle: un-shuffling restores the order; with plain BN keys are unchanged, with split BN they differ', () => {
    const x = tf.tensor2d([[0], [1], [2], [3], [4]]);
    const perm = new Rng(5).permutation(5);
    const { shuffled, inverse } = shuffleRows(x, perm);
    expect((shuffled.arraySync() as number[][]).map((r) => r[0])).toEqual(Array.from(perm));
    expect(tf.gather(shuffled, Array.from(inverse)).arraySync()).toEqual(x.arraySync());
    tf.dispose([x, shuffled]);

    const plain = harness(); // bnSplits 1: a shuffle would change nothing, so none is drawn
    expect(plain.keyPolicy.state().values).toEqual({});
    const splitOn = harness({}, { bnSplits: 4 });
    const splitOff = harness({ shuffleBn: false }, { bnSplits: 4 });
    expect(splitOff.keyPolicy.state().values).toEqual({});
    const b = splitOn.nextBatch();
    const rngState = splitOn.keyPolicy.state().values.shuffle_rng as number[];
    const kOn = splitOn.keyPolicy.encode(b.x2)!;
    const kOff = splitOff.keyPolicy.encode(b.x2)!; // same weights (same seed), unshuffled splits
    expect(tf.max(tf.abs(tf.sub(kOn, kOff))).dataSync()[0]).toBeGreaterThan(1e-3);
    // what shuffle BN must compute: encode the shuffled batch, then put the keys back in order
    const replay = new Rng(0);
    replay.setState(rngState);
    const p2 = shuffleRows(b.x2, replay.permutation(16));
    const expected = tf.gather(
      (splitOff.keyPolicy as MomentumKeyEncoder).keyEncoder.embed(p2.shuffled, true),
      Array.from(p2.inverse),
    );
    expect(tf.max(tf.abs(tf.sub(kOn, expected))).dataSync()[0]).toBeLessThan(1e-5);
    tf.dispose([kOn, kOff, expected, p2.shuffled]);
    disposeBatch(b);
    [plain, splitOn, splitOff].forEach((h) => h.dispose());
  });

  it('symmetric loss = l(q1, k2) + l(q2, k1) against the same queue; both keys enqueued once', () => {
    const h = harness({}, { symmetric: true });
    const b = h.nextBatch();
    const queue = h.queue.keys.clone();
    const ptr = h.queue.ptr;
    // by hand, with the weights before the step (training-mode BN: batch statistics)
    const expected = tf.tidy(() => {
      const q1 = h.encoder.embed(b.x1, true);
      const q2 = h.encoder.embed(b.x2, true);
      const k1 = h.keyPolicy.encode(b.x1)!;
      const k2 = h.keyPolicy.encode(b.x2)!;
      const l = (q: tf.Tensor2D, k: tf.Tensor2D) =>
        infoNce({ query: q, positive: k, negatives: queue, temperature: 0.1 }).loss;
      return tf.add(l(q1, k2), l(q2, k1)).dataSync()[0]!;
    });
    const out = h.stepOn(b, 0.05);
    expect(out.loss.dataSync()[0]).toBeCloseTo(expected, 4);
    expect(h.queue.ptr).toBe((ptr + 32) % 40); // 2N = 32 keys, enqueued once
    tf.dispose([out.loss, ...Object.values(out.metrics), queue]);
    disposeBatch(b);
    h.dispose();
  });

  it('keeps the tensor count constant over 20 real steps', () => {
    const h = harness();
    const { losses, tensorCounts } = h.run(20);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    h.dispose();
  });
});
