import * as tf from '@tensorflow/tfjs';
import { ConfigError, tagParameters, type ExperimentConfig } from '@contrast/core';
import { describe, expect, it } from 'vitest';
import { clipGradients, ParameterPlan, resolveParameterOptions } from './groups.js';
import { Sgd } from './sgd.js';

type Optim = ExperimentConfig['optim'];
const optim = (o: Partial<Optim> = {}): Optim =>
  ({
    decay: 'all',
    groups: [],
    weightDecay: 0.1,
    clipGradNorm: 0,
    clipMode: 'global',
    ...o,
  }) as Optim;
const values = (t: tf.Tensor) => Array.from(t.dataSync());

describe('per-parameter options from optim.decay, tags, method groups and optim.groups', () => {
  const kernel = tf.variable(tf.ones([2, 2]));
  const bias = tf.variable(tf.ones([2]));
  const head = tf.variable(tf.ones([2, 2]));
  const names = new Map([
    [kernel, 'encoder/conv/kernel'],
    [bias, 'encoder/conv/bias'],
    [head, 'predictor/last/kernel'],
  ]);
  const nameOf = (v: tf.Variable) => names.get(v)!;

  it('refuses a rule that matches no trained parameter, naming the rule and the names there are', () => {
    const rules = [{ match: '^predictor/' }, { match: 'patch_embed', frozen: true }];
    const resolve = () =>
      resolveParameterOptions([{ params: [kernel, head] }], optim({ groups: rules }), 10, nameOf);
    expect(resolve).toThrow(ConfigError);
    expect(resolve).toThrow(
      "config field 'optim.groups[1].match': 'patch_embed' matches none of the model's trained parameters",
    );
    expect(resolve).toThrow(
      /fix: match a part of their checkpoint names \(e\.g\. encoder\/conv, predictor\/last\)/,
    );
  });

  it("'no-norm-bias' decays rank > 1 only; 'all' decays everything", () => {
    const groups = [{ params: [kernel, bias] }];
    const decays = (decay: Optim['decay']) =>
      resolveParameterOptions(groups, optim({ decay }), 10, nameOf).map((o) => o.decay);
    expect(decays('no-norm-bias')).toEqual([true, false]);
    expect(decays('all')).toEqual([true, true]);
  });

  it('applies tags, then the method group, then each matching rule, field by field', () => {
    const tagged = tf.variable(tf.ones([3, 3]));
    names.set(tagged, 'encoder/patch/kernel');
    tagParameters([tagged], { frozen: true, lrScale: 2 });
    const groups = [
      { params: [kernel, tagged] },
      { params: [head], fixedLr: true, frozen: { epochs: 1 } },
    ];
    const rules = [
      { match: '^predictor/', lrScale: 0.5 },
      { match: 'patch', frozen: false },
      { match: '^encoder/conv', decay: false },
    ];
    const o = resolveParameterOptions(groups, optim({ groups: rules }), 10, nameOf);
    expect(o).toEqual([
      { fixedLr: false, lrScale: 1, decay: false, frozenUntil: 0 },
      { fixedLr: false, lrScale: 2, decay: true, frozenUntil: 0 }, // the rule unfroze it
      { fixedLr: true, lrScale: 0.5, decay: true, frozenUntil: 10 }, // 1 epoch of 10 steps
    ]);
    const tagOnly = resolveParameterOptions([{ params: [tagged] }], optim(), 10, nameOf);
    expect(tagOnly[0]).toMatchObject({ lrScale: 2, frozenUntil: Infinity });
  });

  it('gives each parameter its lr and scheduled weight decay, null while frozen', () => {
    const plan = new ParameterPlan(
      [
        { params: [kernel] },
        { params: [bias], decay: false, lrScale: 0.1 },
        { params: [head], fixedLr: true, frozen: { steps: 3 } },
      ],
      optim({ weightDecay: 0.04, weightDecayEnd: 0.4 }),
      10,
      nameOf,
    );
    // step 50 of 100: wd at the cosine's midpoint 0.22; scheduled lr 0.5, base lr 1
    expect(plan.steps(50, 100, 0.5, 1)).toEqual([
      { lr: 0.5, weightDecay: expect.closeTo(0.22, 12) },
      { lr: 0.05, weightDecay: 0 },
      { lr: 1, weightDecay: expect.closeTo(0.22, 12) },
    ]);
    expect(plan.steps(2, 100, 0.5, 1)[2]).toBeNull();
    expect(plan.steps(3, 100, 0.5, 1)[2]).not.toBeNull();
  });
});

describe('a frozen parameter under SGD', () => {
  it('stays unchanged with its momentum buffer untouched until its step, then trains', () => {
    const w = tf.variable(tf.tensor1d([1, 2]));
    const f = tf.variable(tf.tensor1d([5]));
    const opt = new Sgd([w, f], 0.9);
    const plan = new ParameterPlan(
      [{ params: [w] }, { params: [f], frozen: { steps: 2 } }],
      optim({ weightDecay: 0 }),
      1,
    );
    const step = (s: number) =>
      tf.tidy(() =>
        plan.apply(
          opt,
          [w, f],
          { [w.name]: tf.ones([2]), [f.name]: tf.ones([1]) },
          {
            step: s,
            total: 10,
            lr: 0.1,
            baseLr: 0.1,
          },
        ),
      );
    step(0);
    step(1);
    expect(values(f)).toEqual([5]);
    expect(values(opt.state().tensors['momentum_buffer/1']!)).toEqual([0]);
    expect(values(w)).toEqual([0.71, 1.71].map((x) => expect.closeTo(x, 6))); // buf 1, then 1.9
    step(2); // its first update: buf = g (a zero buffer), w = 5 - 0.1
    expect(values(f)).toEqual([expect.closeTo(4.9, 6)]);
    expect(values(opt.state().tensors['momentum_buffer/1']!)).toEqual([1]);
  });
});

describe('gradient clipping by norm', () => {
  const a = tf.variable(tf.zeros([2]));
  const b = tf.variable(tf.zeros([1]));
  const grads = () => ({ [a.name]: tf.tensor1d([3, 4]), [b.name]: tf.tensor1d([12]) });
  const on = [
    { lr: 1, weightDecay: 0 },
    { lr: 1, weightDecay: 0 },
  ];

  it('global (clip_grad_norm_): one norm over all gradients, 13 here, scaled to the bound', () => {
    const out = clipGradients(grads(), [a, b], on, 1.3, 'global');
    const s = 1.3 / (13 + 1e-6);
    expect(values(out[a.name]!)).toEqual([3 * s, 4 * s].map((x) => expect.closeTo(x, 6)));
    expect(values(out[b.name]!)).toEqual([expect.closeTo(12 * s, 6)]);
    // under the bound: unchanged (scale min(1, ...) = 1)
    expect(values(clipGradients(grads(), [a, b], on, 20, 'global')[a.name]!)).toEqual([3, 4]);
  });

  it("per-parameter (DINO's clip_gradients): each gradient to its own bound", () => {
    const out = clipGradients(grads(), [a, b], on, 6, 'per-parameter');
    expect(values(out[a.name]!)).toEqual([3, 4]); // ||g|| = 5 < 6: unchanged
    expect(values(out[b.name]!)).toEqual([expect.closeTo((6 / (12 + 1e-6)) * 12, 6)]);
  });

  it('leaves frozen parameters out of the global norm', () => {
    const out = clipGradients(grads(), [a, b], [on[0]!, null], 1, 'global');
    expect(values(out[a.name]!)).toEqual([0.6, 0.8].map((x) => expect.closeTo(x, 6)));
    expect(values(out[b.name]!)).toEqual([12]);
  });

  it('runs inside the step without leaking', () => {
    const opt = new Sgd([a, b], 0.9);
    const plan = new ParameterPlan(
      [{ params: [a, b] }],
      optim({ clipGradNorm: 1, weightDecay: 0 }),
      1,
    );
    const g = grads();
    const at = { step: 0, total: 1, lr: 1, baseLr: 1 };
    tf.tidy(() => plan.apply(opt, [a, b], g, at));
    const before = tf.memory().numTensors;
    tf.tidy(() => plan.apply(opt, [a, b], g, at));
    expect(tf.memory().numTensors).toBe(before);
    // each step moved the parameters by the clipped gradient (norm 1) and momentum
    expect(values(a)).toEqual([-3, -4].map((x) => expect.closeTo((x / 13) * 2.9, 5)));
  });
});
