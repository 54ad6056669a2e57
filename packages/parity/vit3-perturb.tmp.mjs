import 'reflect-metadata';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@contrast/backend';
import { defineOptimizer, z } from '@contrast/core';
import { compareSteps } from './dist/compare.js';
import { readStepFixture } from './dist/fixture.js';
import { PARITY_METHODS, parityPlugins } from './dist/methods.js';
import { runContrastSide } from './dist/step.js';
await initBackend('tensorflow');
const fixture = readStepFixture('src/fixtures/step-tiny.json');
const m = PARITY_METHODS.find((x) => x.name === 'moco-v3 (ViT, AdamW)');
const stored = fixture.methods[m.name];
class Uncorrected {
  constructor(params) { this.params = params; this.m = params.map((p) => tf.variable(tf.zerosLike(p), false)); this.v = params.map((p) => tf.variable(tf.zerosLike(p), false)); }
  apply(grads, steps) { tf.tidy(() => this.params.forEach((p, i) => { const s = steps[i]; if (!s) return; const g = grads[p.name];
    if (s.weightDecay > 0) p.assign(tf.mul(p, 1 - s.lr * s.weightDecay));
    this.m[i].assign(tf.add(tf.mul(this.m[i], 0.9), tf.mul(g, 0.1))); this.v[i].assign(tf.add(tf.mul(this.v[i], 0.999), tf.mul(tf.square(g), 0.001)));
    p.assign(tf.sub(p, tf.mul(tf.div(this.m[i], tf.add(tf.sqrt(this.v[i]), 1e-8)), s.lr))); })); }
  state() { return { tensors: {}, values: {} }; } loadState() {} dispose() { tf.dispose([...this.m, ...this.v]); }
}
const entry = defineOptimizer({ description: 'x', optionsSchema: z.object({ betas: z.any().optional(), eps: z.any().optional() }).strict(), create: (p) => new Uncorrected(p) });
const plugins = parityPlugins().map((p) => (p.name === 'moco-v3' ? { ...p, optimizers: { 'adamw-uncorrected': entry } } : p));
const cases = {
  none: (s) => s,
  unfrozen: (s) => ({ ...s, optim: { ...s.optim, groups: [] } }),
  nowarmup: (s) => ({ ...s, optim: { ...s.optim, warmupEpochs: 0 } }),
  decayall: (s) => ({ ...s, optim: { ...s.optim, decay: 'all' } }),
  betas95: (s) => ({ ...s, optim: { ...s.optim, betas: [0.9, 0.95] } }),
  uncorrected: (s) => ({ ...s, optim: { ...s.optim, optimizer: 'adamw-uncorrected' } }),
};
for (const [k, change] of Object.entries(cases)) {
  const pm = { ...m, settings: (s) => change(m.settings(s)) };
  const c = compareSteps(runContrastSide(pm, fixture.options, `/tmp/vit3/${k}`, plugins), stored.torch, stored.torch64);
  console.log(k, JSON.stringify(c.firstDivergent), c.steps.map((s) => [s.diff.loss.toExponential(1), s.tolerance.loss.toExponential(1), s.diff.gradNorm.toExponential(1), s.tolerance.gradNorm.toExponential(1)]).join(' | '));
}
