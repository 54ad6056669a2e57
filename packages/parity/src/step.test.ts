import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  defineLoss,
  defineOptimizer,
  swappedPredictionLoss,
  z,
  type Optimizer,
  type ParameterStep,
  type Plugin,
  type SwappedPredictionInput,
  type SwappedPredictionLoss,
} from '@contrast/core';
import { nnclrPlugin, type Nnclr } from '@contrast/plugin-nnclr';
import { SwavLossOptionsSchema } from '@contrast/plugin-swav';
import { compareSteps, FLOOR, type Quantity } from './compare.js';
import { readStepFixture } from './fixture.js';
import { PARITY_METHODS, parityPlugins, type ParityMethod } from './methods.js';
import { readNpy } from './npy.js';
import { runContrastSide } from './step.js';

// PyTorch's records of the tiny model, generated once with the tool:
//   pnpm parity step --tiny --fixture packages/parity/src/fixtures/step-tiny.json
// (regenerate after changing TINY_STEP_OPTIONS, a method's settings or its PyTorch port)
const fixture = readStepFixture(
  fileURLToPath(new URL('./fixtures/step-tiny.json', import.meta.url)),
);
const work = mkdtempSync(join(tmpdir(), 'contrast-parity-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ours = (m: ParityMethod, plugins: Plugin[] = parityPlugins()) =>
  runContrastSide(m, fixture.options, join(work, m.module), plugins);

/**
 * AdamW without its bias correction (w -= lr m / (sqrt(v) + eps)): its first
 * update is (1 - b1) / sqrt(1 - b2) = 3.2 times the corrected one (m = 0.1 g,
 * v = 0.001 g^2), a perturbation the comparison must see.
 */
class UncorrectedAdamW implements Optimizer {
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];

  constructor(private readonly params: readonly tf.Variable[]) {
    this.m = params.map((p) => tf.variable(tf.zerosLike(p), false));
    this.v = params.map((p) => tf.variable(tf.zerosLike(p), false));
  }

  apply(grads: tf.NamedTensorMap, steps: readonly (ParameterStep | null)[]): void {
    tf.tidy(() =>
      this.params.forEach((p, i) => {
        const s = steps[i];
        if (!s) return;
        const [g, m, v] = [grads[p.name]!, this.m[i]!, this.v[i]!];
        p.assign(tf.mul(p, 1 - s.lr * s.weightDecay));
        m.assign(tf.add(tf.mul(m, 0.9), tf.mul(g, 0.1)));
        v.assign(tf.add(tf.mul(v, 0.999), tf.mul(tf.square(g), 0.001)));
        p.assign(tf.sub(p, tf.mul(tf.div(m, tf.add(tf.sqrt(v), 1e-8)), s.lr)));
      }),
    );
  }

  state() {
    return { tensors: {}, values: {} };
  }

  loadState(): void {}

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

/** The parity plugins, with `adamw-uncorrected` (UncorrectedAdamW) registered by MoCo v3's. */
const withUncorrectedAdamW = (): Plugin[] =>
  parityPlugins().map((p) =>
    p.name === 'moco-v3'
      ? {
          ...p,
          optimizers: {
            'adamw-uncorrected': defineOptimizer({
              description: 'AdamW without bias correction (a perturbation)',
              optionsSchema: z.object({}).strict(),
              create: (params) => new UncorrectedAdamW(params),
            }),
          },
        }
      : p,
  );

/**
 * The first step's loss bound where float32 rounding alone exceeds FLOOR.loss:
 * Barlow Twins' loss sums D^2 products of batch-standardised embeddings, and
 * Contrast's float32 step-1 loss is 1.3e-5 (relative) from float64 by itself
 * (the stored report's "step 1 vs float64"; PyTorch float32's: 4e-7).
 */
const FIRST_STEP_LOSS: Readonly<Record<string, number>> = { 'barlow-twins': 3e-5 };

describe('step parity on a tiny model against stored PyTorch values', () => {
  for (const m of PARITY_METHODS) {
    it(`${m.name}: ${fixture.options.steps} steps within float32 tolerance`, () => {
      const stored = fixture.methods[m.name]!;
      const c = compareSteps(ours(m), stored.torch, stored.torch64);
      expect(c.firstDivergent).toBeUndefined();
      // the first step starts from identical weights and inputs: float32 rounding only
      expect(c.steps[0]!.diff.loss).toBeLessThan(FIRST_STEP_LOSS[m.name] ?? FLOOR.loss);
    });
  }

  // one op changed per family: the comparison must fail, at the step the change first acts
  const perturbations: {
    method: string;
    op: string;
    change: (s: ReturnType<ParityMethod['settings']>) => ReturnType<ParityMethod['settings']>;
    step: number;
    quantity?: Quantity;
    plugins?: () => Plugin[];
  }[] = [
    {
      method: 'momentum-queue',
      op: 'a 0.5% change of the InfoNCE temperature',
      change: (s) => ({ ...s, loss: { temperature: 0.1005 } }),
      step: 0,
      quantity: 'loss',
    },
    {
      // the EMA acts after step 1; the target it moved by 1% of one update shows in
      // step 2's loss (2e-4 relative) below that step's tolerance, and in step 3's above it
      method: 'byol',
      op: "the target's EMA rate tau_base 0.99 -> 0.98",
      change: (s) => ({ ...s, strategy: { ...s.strategy!, momentum: 0.98 } }),
      step: 2,
    },
    {
      // the predictor's lr follows the cosine from step 2 on (0.0225, not 0.03): step 3 differs
      method: 'simsiam',
      op: "the predictor's lr on the schedule instead of fixed",
      change: (s) => ({ ...s, strategy: { ...s.strategy!, fixPredictorLr: false } }),
      step: 2,
    },
    {
      method: 'simsiam',
      op: 'no stop-gradient on the target projection',
      change: (s) => ({ ...s, strategy: { ...s.strategy!, stopGradient: false } }),
      step: 0,
    },
    {
      // m_1 / sqrt(v_1) = 0.1 g / (0.0316 |g|): each first update 3.2 times too large
      method: 'moco-v3 (ViT, AdamW)',
      op: "AdamW's bias correction off",
      change: (s) => ({ ...s, optim: { ...s.optim, optimizer: 'adamw-uncorrected' } }),
      plugins: withUncorrectedAdamW,
      step: 1,
      quantity: 'loss',
    },
    {
      // norms' gains move by lr x wd = 5e-5 relative at step 1: below step 2's tolerance,
      // and AdamW's normalised updates carry it into step 3's gradients
      method: 'moco-v3 (ViT, AdamW)',
      op: 'weight decay on norms and biases',
      change: (s) => ({ ...s, optim: { ...s.optim, decay: 'all' } }),
      step: 2,
    },
    {
      // PyTorch's frozen projection has no gradient (its group's norm 0); Contrast's would be
      // 1.4% of the largest group's norm, above the 1% floor
      method: 'moco-v3 (ViT, AdamW)',
      op: 'the patch projection trained',
      change: (s) => ({ ...s, optim: { ...s.optim, groups: [] } }),
      step: 0,
      quantity: 'gradNorm',
    },
    {
      // the redundancy-reduction term at twice its weight: the first loss differs
      method: 'barlow-twins',
      op: 'lambda 0.0051 -> 0.0102',
      change: (s) => ({ ...s, loss: { ...s.loss, lambda: 0.0102 } }),
      step: 0,
      quantity: 'loss',
    },
    {
      method: 'vicreg',
      op: 'no covariance term (weight 1 -> 0)',
      change: (s) => ({ ...s, loss: { ...s.loss, covariance: 0 } }),
      step: 0,
      quantity: 'loss',
    },
    {
      // centre momentum 1 keeps c at 0: the centre after step 1 differs (0 against 0.1 mean t)
      method: 'dino',
      op: 'no centring of the teacher output',
      change: (s) => ({ ...s, loss: { ...s.loss, centerMomentum: 1 } }),
      step: 0,
      quantity: 'state',
    },
  ];
  for (const p of perturbations) {
    it(`${p.method}: ${p.op} diverges at step ${p.step + 1}`, () => {
      const m = PARITY_METHODS.find((x) => x.name === p.method)!;
      const perturbed: ParityMethod = { ...m, settings: (s) => p.change(m.settings(s)) };
      const stored = fixture.methods[m.name]!;
      const c = compareSteps(ours(perturbed, p.plugins?.()), stored.torch, stored.torch64);
      expect(c.firstDivergent?.step).toBe(p.step);
      if (p.quantity) expect(c.firstDivergent?.quantity).toBe(p.quantity);
    });
  }

  // NNCLR's neighbour is a support row: no gradient reaches the embedding through it.
  // Passed straight through to z (nn = z + sg(NN(z) - z)) every loss stays the same and
  // the first step's gradients change. (A neighbour by dot product instead of cosine is
  // not a perturbation: the support rows are unit vectors, the argmax is the same.)
  it('nnclr: the neighbour with a straight-through gradient to the embedding diverges at step 1', () => {
    const straightThrough = (z: tf.Tensor2D, nn: tf.Tensor2D) =>
      tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
        value: tf.clone(args[1] as tf.Tensor2D),
        gradFunc: (dy: tf.Tensor) => [dy, tf.zerosLike(dy)],
      }))(z, nn) as tf.Tensor2D;
    const perturbed = (): Plugin => {
      const plugin = nnclrPlugin() as Plugin;
      return {
        ...plugin,
        build: (ctx) => {
          const method = plugin.build(ctx) as Nnclr;
          const neighbour = method.neighbour.bind(method);
          method.neighbour = (z) => straightThrough(z, neighbour(z));
          return method;
        },
      };
    };
    const m = PARITY_METHODS.find((x) => x.name === 'nnclr')!;
    const plugins = parityPlugins().map((p) => (p.name === 'nnclr' ? perturbed() : p));
    const records = runContrastSide(m, fixture.options, join(work, 'nnclr-st'), plugins);
    const stored = fixture.methods[m.name]!;
    const c = compareSteps(records, stored.torch, stored.torch64);
    expect(c.steps[0]!.diff.loss).toBeLessThan(FLOOR.loss);
    expect(c.firstDivergent?.step).toBe(0);
    expect(c.firstDivergent?.quantity).toBe('gradNorm');
  });
});

/** Scores [B, K] -> SwAV codes [B, K], in place of the Sinkhorn-Knopp codes (a perturbation). */
type Codes = (scores: tf.Tensor2D) => tf.Tensor2D;

/** The built-in plugins with SwAV's loss computing its codes by `codes`. */
function swavWithCodes(codes: Codes): Plugin[] {
  const swav = defineLoss({
    kind: 'swapped-prediction',
    options: SwavLossOptionsSchema,
    create: (): SwappedPredictionLoss => ({
      name: 'swav',
      kind: 'swapped-prediction',
      compute: ({ scores, targets, temperature }: SwappedPredictionInput) => ({
        loss: swappedPredictionLoss(
          scores,
          targets.map((t) => ({ crop: t.crop, codes: codes(t.scores) })),
          temperature,
        ),
      }),
    }),
  });
  return parityPlugins().map((p) => (p.name === 'swav' ? { ...p, losses: { swav } } : p));
}

/** x's value with no gradient (what torch.no_grad gives the codes). */
const constant = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
  value: tf.clone(args[0] as tf.Tensor),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as (x: tf.Tensor2D) => tf.Tensor2D;

/** distributed_sinkhorn's arithmetic (epsilon 0.05, 3 iterations) left on the tape. */
const sinkhornOnTape: Codes = (s) => {
  const [b, k] = s.shape;
  let q = tf.transpose(tf.exp(tf.div(s, 0.05)));
  q = tf.div(q, tf.sum(q));
  for (let i = 0; i < 3; i++) {
    q = tf.div(tf.div(q, tf.sum(q, 1, true)), k);
    q = tf.div(tf.div(q, tf.sum(q, 0, true)), b);
  }
  return tf.transpose(tf.mul(q, b)) as tf.Tensor2D;
};

describe('SwAV step parity catches a change of its codes', () => {
  const m = PARITY_METHODS.find((x) => x.name === 'swav')!;
  const cases: { op: string; codes: Codes; quantity: Quantity }[] = [
    {
      op: 'no Sinkhorn-Knopp (codes softmax(scores / epsilon), no gradient)',
      codes: (s) => constant(tf.softmax(tf.div<tf.Tensor2D>(s, 0.05))),
      quantity: 'loss',
    },
    // the same codes, so the same loss: only the gradient differs
    { op: 'codes with gradient', codes: sinkhornOnTape, quantity: 'gradNorm' },
  ];
  for (const p of cases) {
    it(`${p.op} diverges at step 1 (${p.quantity})`, () => {
      const stored = fixture.methods[m.name]!;
      const records = runContrastSide(
        m,
        fixture.options,
        join(work, 'swav'),
        swavWithCodes(p.codes),
      );
      const c = compareSteps(records, stored.torch, stored.torch64);
      expect(c.firstDivergent?.step).toBe(0);
      expect(c.firstDivergent?.quantity).toBe(p.quantity);
    });
  }
});

describe("the synced comparison's state export", () => {
  // what python/step.py loads before every step: weights, key encoder and SGD
  // momentum buffers must be the same parameters in the same (torch) layout
  it('state-(i+1) = state-i - lr_i * buffer-(i+1); key-(i+1) = m key-i + (1 - m) state-(i+1)', () => {
    const m = PARITY_METHODS.find((x) => x.name === 'momentum-queue')!;
    const dir = join(work, 'sync');
    const o = { ...fixture.options, steps: 2 };
    runContrastSide(m, o, dir, parityPlugins(), { sync: true });
    const { lrs } = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
      lrs: number[];
    };
    const read = (i: number, part: string, name: string) =>
      readNpy(join(dir, `state-00${i}`, part, `${name}.npy`)).data as Float32Array;
    const names = readdirSync(join(dir, 'state-000', 'opt')).map((f) => f.replace(/\.npy$/, ''));
    expect(names).toContain('conv1.weight');
    expect(names.some((n) => n.includes('running'))).toBe(false);
    let worst = 0;
    let moved = 0;
    for (const name of names) {
      expect(Math.max(...read(0, 'opt', name).map(Math.abs))).toBe(0);
      for (const i of [0, 1]) {
        const [w0, w1, buf] = [
          read(i, 'weights', name),
          read(i + 1, 'weights', name),
          read(i + 1, 'opt', name),
        ];
        const [k0, k1] = [read(i, 'key', name), read(i + 1, 'key', name)];
        for (let j = 0; j < w0.length; j++) {
          worst = Math.max(worst, Math.abs(w1[j]! - (w0[j]! - lrs[i]! * buf[j]!)));
          worst = Math.max(worst, Math.abs(k1[j]! - (0.99 * k0[j]! + 0.01 * w1[j]!)));
          moved = Math.max(moved, Math.abs(w1[j]! - w0[j]!));
        }
      }
    }
    expect(moved).toBeGreaterThan(1e-4); // the steps did move the weights
    expect(worst).toBeLessThan(1e-6);
  });

  // the synced comparison's probe runs each step on the reversed batch first and then
  // restores the whole state: the run itself must not change (bank draws included)
  for (const name of ['momentum-queue', 'memory-bank (InfoNCE)']) {
    it(`${name}: the records are the same with and without the self-noise probe`, () => {
      const m = PARITY_METHODS.find((x) => x.name === name)!;
      const plain = runContrastSide(m, fixture.options, join(work, 'plain'), parityPlugins());
      const probed = runContrastSide(m, fixture.options, join(work, 'probed'), parityPlugins(), {
        sync: true,
      });
      probed.forEach((r, i) => {
        const p = plain[i]!;
        expect(r.loss).toBe(p.loss);
        expect(r.gradNorms).toEqual(p.gradNorms);
        expect(r.bn).toEqual(p.bn);
        expect(r.state).toEqual(p.state);
        expect(r.selfNoise!.loss).toBeLessThan(FLOOR.loss);
        expect(r.selfNoise!.gradNorm).toBeLessThan(FLOOR.gradNorm);
      });
      expect(plain[0]!.selfNoise).toBeUndefined();
    });
  }
});
