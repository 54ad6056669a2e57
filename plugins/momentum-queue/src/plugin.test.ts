import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  composeExperiment,
  parseExperiment,
  Tokens,
  type Encoder,
  type KeyEncoderPolicy,
  type NegativeSource,
  MomentumKeyEncoder,
} from '@contrast/core';
import { BatchAugmentation, twoViewBatches, disposeBatch } from '@contrast/data';
import { contrastiveStep, createCatalog, Sgd } from '@contrast/trainer';
import { momentumQueuePlugin, MomentumQueueSource } from './index.js';

function compose(overrides: Record<string, unknown> = {}) {
  const config = parseExperiment({
    name: 'mq-test',
    data: { trainSubset: 512 },
    model: { encoder: 'convnet', width: 0.25, dim: 16 },
    strategy: { name: 'momentum-queue', queueSize: 40, momentum: 0.99, ...overrides },
    optim: { batchSize: 16, lr: 0.05 },
  });
  const { container, dataset } = composeExperiment(
    config,
    createCatalog([momentumQueuePlugin() as never]),
  );
  const encoder = container.resolve<Encoder>(Tokens.Encoder);
  const keyPolicy = container.resolve<KeyEncoderPolicy>(Tokens.KeyEncoderPolicy);
  const source = container.resolve<NegativeSource>(Tokens.NegativeSource);
  const parts = {
    encoder,
    keyPolicy,
    source,
    loss: container.resolve(Tokens.Loss),
    optimizer: new Sgd(encoder.parameters(), 0.9, 5e-4),
    temperature: 0.1,
  };
  const batches = twoViewBatches({
    dataset,
    augmentation: new BatchAugmentation(
      config.data.augmentation,
      dataset,
      container.resolve(Tokens.Rng),
    ),
    rng: container.resolve(Tokens.Rng),
    batchSize: 16,
    dropLast: true,
    epochs: 100,
  });
  return {
    parts,
    batches,
    source: source as MomentumQueueSource,
    keyPolicy: keyPolicy as MomentumKeyEncoder,
    encoder,
  };
}

const snapshot = (vs: readonly tf.Variable[]) => vs.map((v) => Float32Array.from(v.dataSync()));
const maxDiff = (a: Float32Array[], b: Float32Array[]) =>
  Math.max(...a.map((x, i) => Math.max(...x.map((v, j) => Math.abs(v - b[i]![j]!)))));

describe('momentum-queue plugin', () => {
  it('binds its parts through the container', () => {
    const { parts, source, keyPolicy } = compose();
    expect(source).toBeInstanceOf(MomentumQueueSource);
    expect(keyPolicy).toBeInstanceOf(MomentumKeyEncoder);
    expect(parts.loss.name).toBe('infonce');
    expect(source.queue.size).toBe(40);
  });

  it('rejects a bad strategy section with the field named', () => {
    expect(() => compose({ queueSize: 0 })).toThrow(/strategy.queueSize/);
    expect(() => compose({ momentun: 0.9 })).toThrow(/did you mean 'momentum'/);
  });

  it('no gradient reaches the key encoder: with m = 1 it never changes while the query encoder trains', () => {
    const { parts, batches, keyPolicy, encoder } = compose({ momentum: 1 });
    const key0 = snapshot(keyPolicy.keyEncoder.parameters());
    const q0 = snapshot(encoder.parameters());
    for (let i = 0; i < 3; i++) {
      const b = batches.next().value!;
      tf.dispose(Object.values(contrastiveStep(parts, b, 0.05)));
      disposeBatch(b);
    }
    expect(maxDiff(snapshot(keyPolicy.keyEncoder.parameters()), key0)).toBe(0);
    expect(maxDiff(snapshot(encoder.parameters()), q0)).toBeGreaterThan(1e-4);
  });

  it('updates the key encoder as the EMA of the query encoder after the step (m = 0.5)', () => {
    const { parts, batches, keyPolicy, encoder } = compose({ momentum: 0.5 });
    const key0 = snapshot(keyPolicy.keyEncoder.parameters());
    const b = batches.next().value!;
    tf.dispose(Object.values(contrastiveStep(parts, b, 0.05)));
    disposeBatch(b);
    const q1 = snapshot(encoder.parameters());
    const expected = key0.map((k, i) => k.map((v, j) => 0.5 * v + 0.5 * q1[i]![j]!));
    expect(maxDiff(snapshot(keyPolicy.keyEncoder.parameters()), expected)).toBeLessThan(1e-6);
  });

  it('enqueues the batch keys after computing the loss, wrapping around K = 40', () => {
    const { parts, batches, source } = compose();
    for (let i = 0; i < 3; i++) {
      const b = batches.next().value!;
      const keysBefore = source.queue.keys.arraySync() as number[][];
      const ptr = source.queue.ptr;
      const keyEmb = parts.keyPolicy.encode(b.key)!; // BN batch stats: same keys as the step computes
      tf.dispose(Object.values(contrastiveStep(parts, b, 0.05)));
      const after = source.queue.keys.arraySync() as number[][];
      const k = keyEmb.arraySync() as number[][];
      k.forEach((row, j) =>
        row.forEach((v, d) => expect(after[(ptr + j) % 40]![d]).toBeCloseTo(v, 2)),
      );
      // rows not written this step are untouched
      for (let r = 0; r < 40; r++)
        if ((r - ptr + 40) % 40 >= 16) expect(after[r]).toEqual(keysBefore[r]);
      expect(source.queue.ptr).toBe((ptr + 16) % 40);
      tf.dispose([keyEmb]);
      disposeBatch(b);
    }
  });

  it('keeps the tensor count constant over 20 real steps', () => {
    const { parts, batches } = compose();
    const counts: number[] = [];
    for (let i = 0; i < 20; i++) {
      const b = batches.next().value!;
      const out = contrastiveStep(parts, b, 0.05);
      expect(Number.isFinite(out.loss.dataSync()[0])).toBe(true);
      tf.dispose([out.loss, out.accuracy]);
      disposeBatch(b);
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts.slice(1)).size).toBe(1);
  });
});
