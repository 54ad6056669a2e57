import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@contrast/core';
import { createCatalog, createStepHarness } from '@contrast/trainer';
import { Dino, dinoPlugin } from './index.js';

// 2 global crops of 20 px and 2 local crops of 12 px; 64 images in batches of 32: 2 steps an epoch
const experiment = (
  strategy: Record<string, unknown> = {},
  loss: Record<string, unknown> = {},
) => ({
  name: 'dino-test',
  data: {
    trainSubset: 64,
    views: [
      { name: 'global', count: 2, crop: { size: 20, scale: [0.4, 1] as [number, number] } },
      { name: 'local', count: 2, crop: { size: 12, scale: [0.1, 0.4] as [number, number] } },
    ],
  },
  model: { encoder: 'convnet' as const, width: 0.25, dim: 8 },
  strategy: {
    name: 'dino',
    hiddenDim: 16,
    bottleneckDim: 8,
    outDim: 32,
    momentum: 0.9,
    ...strategy,
  },
  loss,
  optim: { batchSize: 32, lr: 0.05 },
});
const harness = (strategy: Record<string, unknown> = {}, loss: Record<string, unknown> = {}) =>
  createStepHarness(experiment(strategy, loss), createCatalog([dinoPlugin()]));

const host = (t: tf.Tensor) => Array.from(t.dataSync());
const maxDiff = (a: tf.Tensor, b: tf.Tensor) =>
  tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
const parts = (h: ReturnType<typeof harness>) => h.method.state();

describe('dino plugin', () => {
  it("defaults to the paper's loss settings; backbone + MLP trained, the last layer frozen 1 epoch", () => {
    const h = harness();
    expect(h.method).toBeInstanceOf(Dino);
    expect(h.config.loss).toEqual({
      name: 'dino',
      symmetric: false,
      studentTemperature: 0.1,
      teacherTemperature: 0.04,
      warmupTeacherTemperature: 0.04,
      warmupTeacherEpochs: 0,
      centerMomentum: 0.9,
    });
    const groups = h.method.parameterGroups();
    expect(groups[1]!.frozen).toEqual({ epochs: 1 });
    expect(groups[1]!.params).toHaveLength(1);
    const trained = new Set(groups.flatMap((g) => g.params));
    expect(h.encoder.backboneParameters!().every((p) => trained.has(p))).toBe(true);
    expect(Object.keys(parts(h))).toEqual(['teacher', 'teacher_head', 'head', 'center']);
    h.dispose();
  });

  it("the step's loss is dinoLoss of every crop against the teacher's global crops, centre 0", () => {
    const h = harness();
    const b = h.nextBatch();
    const ctx = { mark: () => undefined, clock: h.clock };
    expect(b.crops).toHaveLength(4);
    const got = tf.tidy(() => {
      const prepared = h.method.prepare(b, ctx);
      return h.method.objective(b, prepared, ctx).loss.dataSync()[0]!;
    });
    expect(Number.isFinite(got)).toBe(true);
    // the teacher starts as a copy of the student: the same outputs of the global crops
    const { teacher } = tf.tidy(() => h.method.prepare(b, ctx) as { teacher: tf.Tensor2D[] });
    expect(teacher).toHaveLength(2);
    tf.dispose(teacher);
    tf.dispose([...b.crops, b.indices]);
    h.dispose();
  });

  it('no gradient reaches the teacher or the centre: they move only by their EMAs, on hand values', () => {
    const h = harness();
    const b = h.nextBatch();
    const ctx = { mark: () => undefined, clock: h.clock };
    const teacherOut = tf.tidy(() => {
      const { teacher } = h.method.prepare(b, ctx) as { teacher: tf.Tensor2D[] };
      return tf.mean(tf.concat(teacher, 0), 0, true);
    });
    const head = () => parts(h).head!.tensors['dino_head/fc1/w']!.clone();
    const teacherW = () => parts(h).teacher_head!.tensors['dino_head/fc1/w']!.clone();
    const [t0, s0] = [teacherW(), head()];
    const out = h.stepOn(b, 0.05);
    tf.dispose([out.loss, ...Object.values(out.metrics)]);
    const [t1, s1] = [teacherW(), head()];
    expect(maxDiff(s1, s0)).toBeGreaterThan(1e-6); // the student moved
    // m = cosine momentum at step 0 = 0.9: teacher = 0.9 t0 + 0.1 s1 (no gradient of its own)
    expect(maxDiff(t1, tf.add(tf.mul(t0, 0.9), tf.mul(s1, 0.1)))).toBeLessThan(1e-6);
    // c = 0.9 * 0 + 0.1 * the batch mean of the teacher's outputs (before the step)
    const c = parts(h).center!.tensors.center!;
    expect(maxDiff(c, tf.mul(teacherOut, 0.1))).toBeLessThan(1e-6);
    expect(h.method.parameterGroups().flatMap((g) => g.params)).not.toContain(c);
    tf.dispose([t0, s0, t1, s1, teacherOut]);
    h.dispose();
  });

  it('the last layer is frozen for the first epoch (2 steps), then moves; the MLP moves from step 1', () => {
    const h = harness();
    const last = () => host(parts(h).head!.tensors['dino_head/last/v']!);
    const mlp = () => host(parts(h).head!.tensors['dino_head/fc2/w']!);
    const [v0, m0] = [last(), mlp()];
    h.step();
    expect(mlp()).not.toEqual(m0);
    h.step();
    expect(last()).toEqual(v0);
    h.step();
    expect(last()).not.toEqual(v0);
    h.dispose();
  });

  it("checkpoint and resume: the centre and the teacher's head round-trip into a fresh run", () => {
    const a = harness();
    a.run(2);
    const saved = a.method.state();
    const b = harness();
    b.method.loadState(saved);
    const [ca, cb] = [saved.center!.tensors.center!, b.method.state().center!.tensors.center!];
    expect(host(ca).some((x) => x !== 0)).toBe(true);
    expect(host(cb)).toEqual(host(ca));
    const th = 'dino_head/last/v';
    expect(host(b.method.state().teacher_head!.tensors[th]!)).toEqual(
      host(saved.teacher_head!.tensors[th]!),
    );
    const wide = harness({ outDim: 16 });
    expect(() => wide.method.loadState(saved)).toThrow(/teacher_head|centre/);
    [a, b, wide].forEach((h) => h.dispose());
  });

  it('trains real steps without leaking tensors; logs the momentum and the teacher temperature', () => {
    const h = harness({}, { warmupTeacherEpochs: 2, teacherTemperature: 0.07 });
    expect(h.method.stepValues!()).toEqual({ momentum: 0.9, teacher_temperature: 0.04 });
    const { losses, tensorCounts } = h.run(5);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    h.clock.step = 2; // epoch 1 of a 2-epoch warm-up: the final value
    expect(h.method.stepValues!().teacher_temperature).toBeCloseTo(0.07, 10);
    h.dispose();
  });

  it("trains a ViT: its positions are the data's (28 px: 7x7 patches), resampled for the 5x5 and 3x3 crops, and learn", () => {
    const input = experiment();
    const vit = { encoder: 'vit', patchSize: 4, embedDim: 16, depth: 1, heads: 2, dim: 8 };
    const h = createStepHarness({ ...input, model: vit }, createCatalog([dinoPlugin()]));
    const pos = new Map(h.encoder.namedVariables()).get('pos_embed')!;
    expect(pos.shape).toEqual([1, 50, 16]);
    const before = pos.clone();
    const { losses, tensorCounts } = h.run(3);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    expect(maxDiff(before, pos)).toBeGreaterThan(0);
    before.dispose();
    h.dispose();
    // local crops of 10 px do not split into 4-px patches: refused before any step, naming the view
    const views = [input.data.views[0]!, { ...input.data.views[1]!, crop: { size: 10 } }];
    const bad = { ...input, data: { ...input.data, views }, model: vit };
    expect(() => createStepHarness(bad, createCatalog([dinoPlugin()]))).toThrow(
      /data\.views\.1\.crop\.size.*cannot take crops of 10 px: 4 does not divide a 10x10 view/,
    );
  });

  it('refuses a loss of another kind, a temperature, a loss option in strategy and a misspelt one', () => {
    const build = (strategy: Record<string, unknown>, loss: Record<string, unknown>) => () =>
      createStepHarness(experiment(strategy, loss), createCatalog([dinoPlugin()]));
    expect(build({}, { name: 'infonce' })).toThrow(ConfigError);
    expect(build({}, { temperature: 0.1 })).toThrow(ConfigError);
    expect(build({ centerMomentum: 0.9 }, {})).toThrow(ConfigError);
    expect(build({}, { teacherTemp: 0.07 })).toThrow(/teacherTemperature/);
  });
});
