import * as tf from '@tensorflow/tfjs';
import { ContrastiveMethod, type ExperimentInput, type Plugin } from '@contrast/core';
import { byolPlugin } from '@contrast/plugin-byol';
import { endToEndPlugin } from '@contrast/plugin-end-to-end';
import { memoryBankPlugin } from '@contrast/plugin-memory-bank';
import { mocoV3Plugin } from '@contrast/plugin-moco-v3';
import { momentumQueuePlugin } from '@contrast/plugin-momentum-queue';
import { nnclrPlugin } from '@contrast/plugin-nnclr';
import { simsiamPlugin } from '@contrast/plugin-simsiam';
import { barlowTwinsPlugin } from '@contrast/plugin-barlow-twins';
import { vicregPlugin } from '@contrast/plugin-vicreg';
import { swavPlugin } from '@contrast/plugin-swav';
import { dinoPlugin } from '@contrast/plugin-dino';
import type { StepHarness } from '@contrast/trainer';

/** Arrays a method draws inside its step (sampled negatives, shuffle permutations), by name. */
export type Drawn = Record<string, Int32Array>;

/**
 * One built-in method in the parity harness: the experiment settings that
 * select it, the PyTorch port that mirrors it (python/methods/<module>.py),
 * which of its state tensors to compare, and, when the step draws random
 * numbers PyTorch must reuse, a hook that records them.
 */
export interface ParityMethod {
  /** Report name. */
  name: string;
  /** The PyTorch port's module. */
  module: string;
  /** The method's plugin (the one `strategy.name` selects). */
  plugin: () => Plugin;
  /** Merged over the parity experiment. */
  settings: (size: ParitySize) => Partial<ExperimentInput>;
  /** The strategy state compared after each step (DINO's: its centre). */
  state?: 'queue' | 'bank' | 'center';
  /**
   * false when reversing the batch changes the step's mathematics (shuffle BN:
   * the shuffled sub-batches then hold other images), so the synced comparison
   * cannot measure Contrast's own noise by it. Default true.
   */
  orderInvariant?: boolean;
  /** Installs recorders on the harness; `take()` returns and clears this step's draws. */
  record?: (h: StepHarness) => { take(): Drawn };
}

/** The sizes of a parity run (the tool's default or the suite's tiny one). */
export interface ParitySize {
  queue: number;
  negatives: number;
  /** Hidden width of the predictor (MoCo v3, BYOL, SimSiam). */
  predictorHidden: number;
  /** Hidden width of the projector with BN ('mlp-bn' heads: BYOL, SimSiam). */
  projectorHidden: number;
  bnSplits: number;
}

/** DINO's parity settings: 2 global + 2 local crops of 14 px, its head and loss (both DINO cases). */
const dinoSettings = (s: ParitySize): Partial<ExperimentInput> => ({
  data: {
    views: [
      { name: 'global', count: 2 },
      { name: 'local', count: 2, crop: { size: 14, scale: [0.05, 0.4] } },
    ],
  },
  strategy: {
    name: 'dino',
    hiddenDim: s.projectorHidden,
    bottleneckDim: s.predictorHidden,
    outDim: 4 * s.projectorHidden,
    headLayers: 3,
    momentum: 0.99,
    freezeLastLayerEpochs: 0.25,
  },
  loss: { name: 'dino', centerMomentum: 0.9 },
});

/**
 * What the harness compares of any method, read through its checkpoint parts:
 * the predictor's variables (MoCo v3, BYOL, SimSiam, NNCLR; DINO's head) or SwAV's
 * prototypes (trained beside the encoder, so with it in `predictor`), the key or
 * target encoder's tensors (MoCo's `key_encoder`, BYOL's `target`, DINO's `teacher`
 * with its `teacher_head`; none for SimSiam and end-to-end) and the strategy's queue
 * or bank (NNCLR's: its `support` queue; DINO's centre). The tensors are the method's own.
 */
export function parityParts(h: StepHarness): {
  predictor: Map<string, tf.Variable>;
  key: Record<string, tf.Tensor>;
  strategy: Record<string, tf.Tensor>;
} {
  const parts = h.method.state();
  const key = parts.key_encoder ?? parts.target ?? parts.teacher;
  return {
    predictor: new Map(
      Object.entries({
        ...(parts.predictor ?? parts.head)?.tensors,
        ...parts.prototypes?.tensors,
      }),
    ) as Map<string, tf.Variable>,
    key: { ...key?.tensors, ...parts.teacher_head?.tensors },
    strategy: (parts.strategy ?? parts.support ?? parts.center)?.tensors ?? {},
  };
}

/** The parts of a harness's contrastive method (the recorders of MoCo's shuffle and the bank's draws). */
export function contrastiveParts(h: StepHarness): ContrastiveMethod['parts'] {
  if (!(h.method instanceof ContrastiveMethod)) {
    throw new Error(`parity: ${h.method.name} is not a contrastive method`);
  }
  return h.method.parts;
}

/**
 * Records the rows BankSource draws as negatives: the Int32Array handed to
 * bank.gather (positives are gathered with the batch's index tensor).
 */
function recordBankDraws(h: StepHarness): { take(): Drawn } {
  const bank = (
    contrastiveParts(h).source as unknown as {
      bank: { gather(i: tf.Tensor1D | Int32Array): tf.Tensor2D };
    }
  ).bank;
  const gather = bank.gather.bind(bank);
  let drawn: Int32Array | undefined;
  bank.gather = (i) => {
    if (i instanceof Int32Array) drawn = Int32Array.from(i);
    return gather(i);
  };
  return {
    take() {
      if (!drawn) throw new Error('memory bank: no negatives were drawn this step');
      const out = { negatives: drawn };
      drawn = undefined;
      return out;
    },
  };
}

/**
 * Records shuffle BN's permutations: the rows the momentum key encoder saw, in
 * order, matched to the batch handed to the key encoder's encode (perm0, perm1 per call).
 */
function recordShuffles(h: StepHarness): { take(): Drawn } {
  type Embed = (x: tf.Tensor4D, training: boolean) => tf.Tensor2D;
  const policy = contrastiveParts(h).keyEncoder as unknown as {
    encode(x: tf.Tensor4D): tf.Tensor2D | undefined;
    keyEncoder: { embed: Embed };
  };
  const encode = policy.encode.bind(policy);
  const embed = policy.keyEncoder.embed.bind(policy.keyEncoder);
  let given: tf.Tensor4D | undefined;
  let perms: Int32Array[] = [];
  policy.encode = (x) => {
    given = x;
    return encode(x);
  };
  policy.keyEncoder.embed = (x, training) => {
    if (given) perms.push(matchRows(x, given));
    given = undefined;
    return embed(x, training);
  };
  return {
    take() {
      const out = Object.fromEntries(perms.map((p, i) => [`perm${i}`, p]));
      perms = [];
      return out;
    },
  };
}

/** perm with shuffled[i] = original[perm[i]], found by the rows' exact pixel values. */
export function matchRows(shuffled: tf.Tensor, original: tf.Tensor): Int32Array {
  const n = original.shape[0]!;
  const a = shuffled.dataSync();
  const b = original.dataSync();
  const width = b.length / n;
  const key = (d: ArrayLike<number>, i: number) =>
    Array.prototype.slice.call(d, i * width, (i + 1) * width).join(',');
  const where = new Map<string, number>();
  for (let i = 0; i < n; i++) where.set(key(b, i), i);
  return Int32Array.from({ length: n }, (_, i) => {
    const j = where.get(key(a, i));
    if (j === undefined) throw new Error('shuffle BN: a key-encoder input row is not in the batch');
    return j;
  });
}

/** Every built-in method, with the variants the harness checks. */
export const PARITY_METHODS: ParityMethod[] = [
  {
    name: 'momentum-queue',
    module: 'momentum_queue',
    plugin: momentumQueuePlugin,
    state: 'queue',
    settings: (s) => ({
      strategy: { name: 'momentum-queue', queueSize: s.queue, momentum: 0.99 },
    }),
  },
  {
    name: 'momentum-queue (symmetric)',
    module: 'momentum_queue',
    plugin: momentumQueuePlugin,
    state: 'queue',
    settings: (s) => ({
      strategy: { name: 'momentum-queue', queueSize: s.queue, momentum: 0.99 },
      loss: { temperature: 0.1, symmetric: true },
    }),
  },
  {
    name: 'momentum-queue (SplitBN + shuffle)',
    module: 'momentum_queue',
    plugin: momentumQueuePlugin,
    state: 'queue',
    settings: (s) => ({
      strategy: { name: 'momentum-queue', queueSize: s.queue, momentum: 0.99, shuffleBn: true },
      model: { bnSplits: s.bnSplits },
    }),
    record: recordShuffles,
    orderInvariant: false,
  },
  {
    name: 'end-to-end (NT-Xent)',
    module: 'end_to_end',
    plugin: endToEndPlugin,
    settings: () => ({ strategy: { name: 'end-to-end' } }),
  },
  {
    name: 'memory-bank (InfoNCE)',
    module: 'memory_bank',
    plugin: memoryBankPlugin,
    state: 'bank',
    settings: (s) => ({
      strategy: { name: 'memory-bank', negatives: s.negatives, momentum: 0.5 },
    }),
    record: recordBankDraws,
  },
  {
    name: 'memory-bank (NCE)',
    module: 'memory_bank',
    plugin: memoryBankPlugin,
    state: 'bank',
    settings: (s) => ({
      strategy: { name: 'memory-bank', negatives: s.negatives, momentum: 0.5 },
      loss: { temperature: 0.1, name: 'nce' },
    }),
    record: recordBankDraws,
  },
  {
    name: 'moco-v3',
    module: 'moco_v3',
    plugin: mocoV3Plugin,
    settings: (s) => ({
      strategy: { name: 'moco-v3', momentum: 0.99, predictorHidden: s.predictorHidden },
      loss: { temperature: 0.2, symmetric: true },
    }),
  },
  {
    // BYOL's projector (Linear-BN-ReLU-Linear), predictor, cosine target EMA, 2 - 2 cos both ways
    name: 'byol',
    module: 'byol',
    plugin: byolPlugin,
    settings: (s) => ({
      strategy: { name: 'byol', momentum: 0.99, predictorHidden: s.predictorHidden },
      model: { head: 'mlp-bn', hiddenDim: s.projectorHidden },
      loss: {},
    }),
  },
  {
    // SimSiam's ImageNet projector (3 layers, affine-free output BN), the predictor at a fixed lr
    name: 'simsiam',
    module: 'simsiam',
    plugin: simsiamPlugin,
    settings: (s) => ({
      strategy: { name: 'simsiam', predictorHidden: s.predictorHidden },
      model: { head: 'mlp-bn', hiddenDim: s.projectorHidden, headLayers: 3, headOutputBn: true },
      loss: {},
    }),
  },
  {
    // Barlow Twins' 3-layer BN projector, the cross-correlation of the batch-standardised projections
    name: 'barlow-twins',
    module: 'barlow_twins',
    plugin: barlowTwinsPlugin,
    settings: (s) => ({
      strategy: { name: 'barlow-twins' },
      model: { head: 'mlp-bn', hiddenDim: s.projectorHidden, headLayers: 3 },
      loss: { lambda: 0.0051 },
    }),
  },
  {
    // VICReg's 3-layer BN expander, the paper's weights 25 / 25 / 1
    name: 'vicreg',
    module: 'vicreg',
    plugin: vicregPlugin,
    settings: (s) => ({
      strategy: { name: 'vicreg' },
      model: { head: 'mlp-bn', hiddenDim: s.projectorHidden, headLayers: 3 },
      loss: { invariance: 25, variance: 25, covariance: 1 },
    }),
  },
  {
    // MoCo v3's ViT recipe on a tiny ViT (patch 7, 2 blocks of 32, MoCo v3's init: fixed
    // sin-cos positions): its 3-layer BN projector, AdamW with no decay on norms and
    // biases, a linear warm-up over a quarter epoch, the random patch projection frozen
    name: 'moco-v3 (ViT, AdamW)',
    module: 'moco_v3',
    plugin: mocoV3Plugin,
    settings: (s) => ({
      strategy: { name: 'moco-v3', momentum: 0.99, predictorHidden: s.predictorHidden },
      model: {
        encoder: 'vit',
        patchSize: 7,
        embedDim: 32,
        depth: 2,
        heads: 2,
        init: 'moco-v3',
        head: 'mlp-bn',
        hiddenDim: s.projectorHidden,
        headLayers: 3,
        headOutputBn: true,
      },
      loss: { temperature: 0.2, symmetric: true },
      optim: {
        optimizer: 'adamw',
        lr: 1e-3,
        weightDecay: 0.1,
        decay: 'no-norm-bias',
        warmupEpochs: 0.25,
        groups: [{ match: 'patch_embed', frozen: true }],
      },
    }),
  },
  {
    // NNCLR's projector (BN, output BN) and predictor, its support set as the compared queue,
    // the symmetric loss at t 0.1: the neighbour is a support row, no gradient through it
    name: 'nnclr',
    module: 'nnclr',
    plugin: nnclrPlugin,
    state: 'queue',
    settings: (s) => ({
      strategy: { name: 'nnclr', queueSize: s.queue, predictorHidden: s.predictorHidden },
      model: { head: 'mlp-bn', hiddenDim: s.projectorHidden, headOutputBn: true },
      loss: { temperature: 0.1, symmetric: true },
    }),
  },
  {
    // SwAV: 2 global + 2 local crops of 12 px, 20 prototypes (not frozen: the optimizer's frozen
    // groups have their own parity), Sinkhorn-Knopp codes of the global crops; no queue; its
    // recipe's BN projector, whose BN sees every crop at once (the backbone: each resolution's)
    name: 'swav',
    module: 'swav',
    plugin: swavPlugin,
    settings: (s) => ({
      strategy: { name: 'swav', prototypes: 20, freezePrototypesEpochs: 0 },
      model: { head: 'mlp-bn', hiddenDim: s.projectorHidden },
      data: {
        views: [
          { name: 'global', count: 2 },
          { name: 'local', count: 2, crop: { size: 12, scale: [0.1, 0.4] } },
        ],
      },
      loss: { temperature: 0.1, epsilon: 0.05, sinkhornIterations: 3 },
    }),
  },
  {
    // DINO: its head (3 layers, GELU, l2-normalised bottleneck, weight-normalised last layer
    // frozen for a quarter epoch), the teacher on the 2 global crops, the student on all 4
    // crops, centring (the centre compared after each step), tau_s 0.1, tau_t 0.04
    name: 'dino',
    module: 'dino',
    plugin: dinoPlugin,
    state: 'center',
    settings: dinoSettings,
  },
  {
    // DINO on a tiny ViT (patch 7, 2 blocks of 32, learned positions): global crops of 28 px
    // (a 4 x 4 patch grid), local crops of 14 px (2 x 2), so the position embedding is
    // resampled as DINO's interpolate_pos_encoding does; AdamW with no decay on norms and
    // biases (DINO's get_params_groups)
    name: 'dino (ViT, AdamW)',
    module: 'dino',
    plugin: dinoPlugin,
    state: 'center',
    settings: (s) => ({
      ...dinoSettings(s),
      model: { encoder: 'vit', patchSize: 7, embedDim: 32, depth: 2, heads: 2, init: 'timm' },
      optim: { optimizer: 'adamw', lr: 1e-3, weightDecay: 0.04, decay: 'no-norm-bias' },
    }),
  },
];

/** The plugins of the methods whose parity is checked, once each. */
export function parityPlugins(): Plugin[] {
  const byName = new Map(PARITY_METHODS.map((m) => [m.module, m.plugin]));
  return [...byName.values()].map((plugin) => plugin());
}
