import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { negativeCosine, type Head } from '@contrast/core';
import { createCatalog, createStepHarness, maxAbsDiff, snapshotVariables } from '@contrast/trainer';
import { SimSiam, simsiamPlugin } from './index.js';

const harness = (strategy: Record<string, unknown> = {}) =>
  createStepHarness(
    {
      name: 'simsiam-test',
      data: { trainSubset: 512 },
      model: {
        encoder: 'convnet',
        width: 0.25,
        dim: 16,
        head: 'mlp-bn',
        hiddenDim: 32,
        headOutputBn: true,
      },
      strategy: { name: 'simsiam', predictorHidden: 8, ...strategy },
      optim: { batchSize: 32, lr: 0.05 },
    },
    createCatalog([simsiamPlugin()]),
  );
const predictorOf = (h: ReturnType<typeof harness>) =>
  (h.method as unknown as { predictor: Head }).predictor;

describe('simsiam plugin', () => {
  it('has one encoder, a predictor, no momentum encoder and no temperature', () => {
    const h = harness();
    expect(h.method).toBeInstanceOf(SimSiam);
    expect(h.config.loss).toEqual({ name: 'negative-cosine', symmetric: true });
    expect(Object.keys(h.method.state())).toEqual(['predictor']);
    const [encoder, predictor] = h.method.parameterGroups();
    expect(encoder!.params).toEqual(h.encoder.parameters());
    expect(predictor).toMatchObject({ fixedLr: true });
    expect(h.method.phases.afterStep).toEqual([]);
    h.dispose();
  });

  it('stop-gradient: the gradient equals that of the loss with the targets as constants, and differs without it', () => {
    const h = harness();
    const b = h.nextBatch();
    const params = h.method.parameterGroups().flatMap((g) => g.params);
    const ctx = { mark: () => undefined, clock: h.clock };
    const grads = (loss: () => tf.Scalar) => tf.variableGrads(loss, params).grads;
    const p = predictorOf(h);
    // with sg: the method's own objective
    const withSg = grads(() => h.method.objective(b, undefined, ctx).loss);
    // the same loss with z1, z2 computed beforehand (no tape): constants by construction
    const [c1, c2] = [h.encoder.project(b.x1, true), h.encoder.project(b.x2, true)];
    const d = (x: tf.Tensor4D, z: tf.Tensor2D) =>
      negativeCosine(p.apply(h.encoder.project(x, true), true), z);
    const constants = grads(() => tf.div(tf.add(d(b.x1, c2), d(b.x2, c1)), 2) as tf.Scalar);
    // without sg: the targets carry gradient
    const noSg = grads(() => {
      const z1 = h.encoder.project(b.x1, true);
      const z2 = h.encoder.project(b.x2, true);
      const q = (z: tf.Tensor2D) => p.apply(z, true);
      return tf.div(tf.add(negativeCosine(q(z1), z2), negativeCosine(q(z2), z1)), 2) as tf.Scalar;
    });
    const diff = (a: tf.NamedTensorMap, c: tf.NamedTensorMap) =>
      Math.max(...params.map((v) => tf.max(tf.abs(tf.sub(a[v.name]!, c[v.name]!))).dataSync()[0]!));
    expect(diff(withSg, constants)).toBeLessThan(1e-5);
    expect(diff(withSg, noSg)).toBeGreaterThan(1e-4);
    tf.dispose([
      ...Object.values(withSg),
      ...Object.values(constants),
      ...Object.values(noSg),
      c1,
      c2,
    ]);
    tf.dispose([b.x1, b.x2, b.indices]);
    h.dispose();
  });

  it("keeps the predictor's lr fixed: at a scheduled lr of 0 only the predictor moves", () => {
    const h = harness();
    const enc0 = snapshotVariables(h.encoder.parameters());
    const pred0 = snapshotVariables(predictorOf(h).parameters());
    const b = h.nextBatch();
    const out = h.session.step(b, 0); // scheduled lr 0, base lr 0.05
    tf.dispose([out.loss, b.x1, b.x2, b.indices]);
    expect(maxAbsDiff(snapshotVariables(h.encoder.parameters()), enc0)).toBe(0);
    expect(maxAbsDiff(snapshotVariables(predictorOf(h).parameters()), pred0)).toBeGreaterThan(1e-5);
    h.dispose();
  });

  it('trains real steps without leaking tensors; the loss stays in [-1, 1]', () => {
    const h = harness();
    const { losses, tensorCounts } = h.run(10);
    expect(losses.every((l) => l >= -1 && l <= 1)).toBe(true);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    h.dispose();
  });
});
