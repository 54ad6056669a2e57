import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  decodeBundle,
  encodeBundle,
  l2Normalize,
  nearestNeighbours,
  NeighbourInfoNceLoss,
  type Head,
  type KeyQueue,
} from '@contrast/core';
import { createCatalog, createStepHarness } from '@contrast/trainer';
import { Nnclr, nnclrPlugin } from './index.js';

const harness = (loss: Record<string, unknown> = {}) =>
  createStepHarness(
    {
      name: 'nnclr-test',
      data: { trainSubset: 512 },
      model: { encoder: 'convnet', width: 0.25, dim: 16, head: 'mlp-bn', hiddenDim: 32 },
      strategy: { name: 'nnclr', queueSize: 80, predictorHidden: 32 },
      loss,
      optim: { batchSize: 32, lr: 0.05 },
    },
    createCatalog([nnclrPlugin()]),
  );
const supportOf = (h: ReturnType<typeof harness>) =>
  (h.method as unknown as { support: KeyQueue }).support;
const ctxOf = (h: ReturnType<typeof harness>) => ({ mark: () => undefined, clock: h.clock });

describe('nnclr plugin', () => {
  it('has an encoder, a predictor and a support queue; temperature 0.1, symmetric', () => {
    const h = harness();
    expect(h.method).toBeInstanceOf(Nnclr);
    expect(h.config.loss).toEqual({ name: 'nnclr', temperature: 0.1, symmetric: true });
    expect(Object.keys(h.method.state())).toEqual(['predictor', 'support']);
    expect(supportOf(h).keys.shape).toEqual([80, 16]);
    expect(h.method.chanceLoss?.(32)).toBeCloseTo(Math.log(32), 9);
    h.dispose();
  });

  it('the gradient equals that of the loss with the neighbours as constants', () => {
    const h = harness();
    const b = h.nextBatch();
    const support = supportOf(h).keys;
    const params = h.method.parameterGroups().flatMap((g) => g.params);
    const grads = (loss: () => tf.Scalar) => tf.variableGrads(loss, params).grads;
    const withMethod = grads(() => h.method.objective(b, undefined, ctxOf(h)).loss);
    // the neighbours looked up beforehand (no tape): constants by construction
    const [n1, n2] = tf.tidy(() => [
      nearestNeighbours(h.encoder.project(b.x1, true), support).neighbours,
      nearestNeighbours(h.encoder.project(b.x2, true), support).neighbours,
    ]);
    const predictor = (h.method as unknown as { predictor: Head }).predictor;
    const loss = new NeighbourInfoNceLoss();
    const term = (nn: tf.Tensor2D, x: tf.Tensor4D) =>
      loss.compute({
        query: l2Normalize(nn),
        positive: l2Normalize(predictor.apply(h.encoder.project(x, true), true)),
        negatives: 'in-batch',
        temperature: 0.1,
      }).loss;
    const constants = grads(() => tf.div(tf.add(term(n1!, b.x2), term(n2!, b.x1)), 2) as tf.Scalar);
    const diff = Math.max(
      ...params.map(
        (v) => tf.max(tf.abs(tf.sub(withMethod[v.name]!, constants[v.name]!))).dataSync()[0]!,
      ),
    );
    expect(diff).toBeLessThan(1e-5);
    const enc = h.encoder.parameters()[0]!;
    expect(tf.max(tf.abs(withMethod[enc.name]!)).dataSync()[0]).toBeGreaterThan(0);
    // no gradient into the support set: paired-losses.test.ts (nearestNeighbours)
    tf.dispose([...Object.values(withMethod), ...Object.values(constants), n1!, n2!]);
    tf.dispose([b.x1, b.x2, b.indices]);
    h.dispose();
  });

  it("enqueues the first view's normalised projections after the step", () => {
    const h = harness();
    const b = h.nextBatch();
    const z1 = tf.tidy(() => {
      const z = h.encoder.project(b.x1, true);
      return tf.div(z, tf.norm(z, 2, 1, true));
    });
    const before = Array.from(z1.dataSync());
    const out = h.session.step(b, 0); // lr 0: the weights stay, the BN batch statistics are the same
    tf.dispose([out.loss, ...Object.values(out.metrics)]);
    const rows = supportOf(h).keys.slice([0, 0], [32, 16]).dataSync();
    expect(supportOf(h).ptr).toBe(32);
    rows.forEach((v, i) => expect(v).toBeCloseTo(before[i]!, 4));
    tf.dispose([z1, b.x1, b.x2, b.indices]);
    h.dispose();
  });

  it('checkpoint round trip: the support queue and its pointer resume, the next step is the same', () => {
    const a = harness();
    a.run(3);
    const { tensors, values } = a.session.stateBundle();
    const b = harness();
    b.session.loadState(decodeBundle(encodeBundle(tensors, values)));
    expect(supportOf(b).ptr).toBe(96 % 80);
    expect(Array.from(supportOf(b).keys.dataSync())).toEqual(
      Array.from(supportOf(a).keys.dataSync()),
    );
    const batch = a.nextBatch();
    const copy = {
      ...batch,
      x1: batch.x1.clone(),
      x2: batch.x2.clone(),
      indices: batch.indices.clone(),
    };
    const la = a.session.step(batch, 0.05);
    const lb = b.session.step(copy, 0.05);
    expect(lb.loss.dataSync()[0]).toBeCloseTo(la.loss.dataSync()[0]!, 5);
    tf.dispose([la.loss, lb.loss, ...Object.values(la.metrics), ...Object.values(lb.metrics)]);
    tf.dispose([batch.x1, batch.x2, batch.indices, copy.x1, copy.x2, copy.indices]);
    a.dispose();
    b.dispose();
  });

  it('trains real steps without leaking tensors; the loss stays finite', () => {
    const h = harness();
    const { losses, tensorCounts } = h.run(10);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    h.dispose();
  });

  it("takes another in-batch loss: NT-Xent over the neighbours and the other view's predictions", () => {
    const h = harness({ name: 'nt-xent' });
    const { losses } = h.run(2);
    expect(losses.every(Number.isFinite)).toBe(true);
    h.dispose();
  });
});
