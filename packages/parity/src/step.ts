import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  ContractError,
  methodParameters,
  shuffleRows,
  writeFileAtomic,
  type ExperimentInput,
  type Plugin,
  type TrainingDataset,
} from '@contrast/core';
import {
  hasTorchEntry,
  nhwcToNchw,
  torchName,
  toTorchTensor,
  type HeadLayout,
} from '@contrast/models';
import { createCatalog, createStepHarness, scheduledLr, type StepHarness } from '@contrast/trainer';
import { disposeBatch, type TwoViewBatch } from '@contrast/data';
import { differences } from './compare.js';
import type { StepRecord } from './record.js';
import { writeNpy } from './npy.js';
import { parityParts, type Drawn, type ParityMethod, type ParitySize } from './methods.js';

/** The sizes and settings of a step-parity run. */
export interface StepParityOptions {
  steps: number;
  seed: number;
  /** The model, batch, data subset and the sizes of queue, bank draws, predictor and projector. */
  model: NonNullable<ExperimentInput['model']>;
  batchSize: number;
  trainSubset: number;
  size: ParitySize;
}

/** The tool's default: ResNet-18 (CIFAR stem) at width 1/4 on Fashion-MNIST, batch 32, K 256. */
export const DEFAULT_STEP_OPTIONS: StepParityOptions = {
  steps: 50,
  seed: 0,
  model: { encoder: 'resnet18', width: 0.25, stem: 'cifar', dim: 128, head: 'linear' },
  batchSize: 32,
  trainSubset: 1024,
  size: { queue: 256, negatives: 256, predictorHidden: 64, projectorHidden: 128, bnSplits: 4 },
};

/** The suite's tiny model: a ConvNet of 4-8-16 channels, dim 8, batch 8, 3 steps. */
export const TINY_STEP_OPTIONS: StepParityOptions = {
  steps: 3,
  seed: 0,
  model: { encoder: 'convnet', width: 0.125, dim: 8, head: 'linear' },
  batchSize: 8,
  trainSubset: 64,
  size: { queue: 16, negatives: 16, predictorHidden: 8, projectorHidden: 16, bnSplits: 2 },
};

/** The MoCo CIFAR demo's optimiser, the one a method runs with unless its settings give another. */
const DEMO_OPTIM = { lr: 0.03, momentum: 0.9, weightDecay: 5e-4 } as const;

/**
 * The experiment a method runs in: the run's model and the MoCo CIFAR demo's
 * optimiser on Fashion-MNIST views, or the method's own model (when its settings
 * name an encoder: only the run's `dim` is kept) and optimiser.
 */
export function parityExperiment(method: ParityMethod, o: StepParityOptions): ExperimentInput {
  const s = method.settings(o.size);
  return {
    name: 'parity',
    seed: o.seed,
    loss: { temperature: 0.1 },
    ...s,
    data: { dataset: 'fashion-mnist', trainSubset: o.trainSubset, prefetch: 0, ...s.data },
    model: s.model?.encoder ? { dim: o.model.dim, ...s.model } : { ...o.model, ...(s.model ?? {}) },
    strategy: s.strategy!,
    optim: { batchSize: o.batchSize, ...(s.optim ?? DEMO_OPTIM) },
    eval: { knn: { every: 0 }, baselines: false, alignUniform: 0 },
  };
}

/**
 * The torch parameter group of a torchvision or timm name: `layer2.0.conv1.weight`
 * -> `layer2`, `blocks.1.attn.qkv.weight` -> `blocks.1`, `patch_embed.proj.weight` -> `patch_embed`.
 */
export function parameterGroup(name: string, resnet: boolean): string {
  const [top, index] = name.split('.') as [string, string | undefined];
  if (top === 'blocks') return `${top}.${index}`;
  const m = /^(conv|bn)(\d)$/.exec(top);
  if (!m) return top;
  return resnet ? 'stem' : `stage${m[2]}`;
}

/** A side of the comparison: the harness, its recorders and the names it reports. */
interface ContrastSide {
  h: StepHarness;
  take: () => Drawn;
  grads: Record<string, number>;
  /** The last step's gradients by Contrast name, kept when `keepGradients` (the synced export). */
  gradients: [string, tf.Tensor][];
  keepGradients: boolean;
  /** [which, Contrast name, torch name] of each BN buffer reported. */
  bnOrder: [string, string, string][];
  resnet: boolean;
  /** How the projection head maps to torch's Sequential indices (the model's head, headLayers). */
  layout: HeadLayout;
  /** The Contrast name of each online variable, by tf variable name. */
  nameOf: Map<string, string>;
}

function openSide(
  method: ParityMethod,
  o: StepParityOptions,
  plugins: Plugin[],
  dataset?: TrainingDataset,
): ContrastSide {
  const h = createStepHarness(
    parityExperiment(method, o),
    createCatalog(plugins),
    dataset ? { dataset } : {},
  );
  h.clock.total = o.steps;
  const resnet = h.config.model.encoder !== 'convnet';
  const layout = h.config.model;
  const nameOf = new Map([...onlineVariables(h)].map(([k, v]) => [v.name, k]));
  const side: ContrastSide = {
    h,
    take: () => ({}),
    grads: {},
    gradients: [],
    keepGradients: false,
    bnOrder: [],
    resnet,
    layout,
    nameOf,
  };
  const { optimizer } = h.session;
  const apply = optimizer.apply.bind(optimizer);
  const trained = methodParameters(h.method).map((p) => p.name);
  // every group of the online network, 0 where nothing is updated (a frozen or fixed
  // tensor: PyTorch's parameter without .grad), as python/step.py reports them
  const groupOf = (n: string) => parameterGroup(torchName(n, layout), resnet);
  const allGroups = [...nameOf.values()].filter(hasTorchEntry).map(groupOf);
  optimizer.apply = (grads, steps) => {
    // a parameter frozen at this step (its plan step null) has no gradient in PyTorch
    const updated = Object.entries(grads).filter(([v]) => steps[trained.indexOf(v)] !== null);
    const sums: Record<string, number> = Object.fromEntries(allGroups.map((g) => [g, 0]));
    for (const [variable, g] of updated) {
      const group = groupOf(nameOf.get(variable)!);
      sums[group]! += tf.tidy(() => tf.sum(tf.square(g)).dataSync()[0]!);
    }
    side.grads = Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, Math.sqrt(v)]));
    if (side.keepGradients) {
      tf.dispose(side.gradients.map(([, g]) => g));
      side.gradients = updated.map(([v, g]) => [nameOf.get(v)!, tf.keep(tf.clone(g))]);
    }
    apply(grads, steps);
  };
  if (method.record) side.take = method.record(h).take;
  const buffers = (which: string, names: Iterable<string>) =>
    [...names]
      .filter((n) => /running_(mean|var)$/.test(n))
      .map((n) => [which, n, torchName(n, layout)] as [string, string, string]);
  side.bnOrder = [
    ...buffers('query', onlineVariables(h).keys()),
    ...buffers(
      'key',
      keyTensors(h).map(([name]) => name),
    ),
  ];
  return side;
}

/**
 * The online network's variables by Contrast name: the encoder's and its
 * predictor's (MoCo v3, BYOL, SimSiam) or head's (DINO), without the encoder's
 * parameters the method does not train (DINO's own head replaces the encoder's).
 */
function onlineVariables(h: StepHarness): Map<string, tf.Variable> {
  const trained = new Set(methodParameters(h.method));
  const all = [...h.encoder.namedVariables(), ...parityParts(h).predictor];
  return new Map(all.filter(([, v]) => !v.trainable || trained.has(v)));
}

/** The key / target / teacher tensors of the online network's variables (same names). */
function keyTensors(h: StepHarness): [string, tf.Tensor][] {
  const online = onlineVariables(h);
  return Object.entries(parityParts(h).key).filter(([name]) => online.has(name));
}

/** The torch names of the parameters trained at the unscheduled lr (SimSiam's predictor). */
function fixedLrNames(side: ContrastSide): string[] {
  return side.h.method
    .parameterGroups()
    .filter((g) => g.fixedLr)
    .flatMap((g) => g.params.map((p) => torchName(side.nameOf.get(p.name)!, side.layout)));
}

/** The method's queue or bank (the strategy state the harness compares), if it has one. */
function strategyState(h: StepHarness, method: ParityMethod): tf.Tensor | undefined {
  return method.state ? parityParts(h).strategy[method.state] : undefined;
}

/** A step's number in exchange file names: 7 -> '007'. */
const nnn = (i: number) => String(i).padStart(3, '0');

function bnValues(side: ContrastSide): Float32Array {
  const key = parityParts(side.h).key;
  const vars = onlineVariables(side.h);
  const parts = side.bnOrder.map(
    ([which, name]) =>
      (which === 'query' ? vars.get(name)! : key[name]!).dataSync() as Float32Array,
  );
  return Float32Array.from(parts.flatMap((p) => Array.from(p)));
}

/**
 * Writes a tensor map (Contrast names) as one `<torch name>.npy` per tensor, head
 * names by `layout`; an affine-free BN's fixed scale and offset have no torch entry.
 */
export function exportWeights(
  dir: string,
  tensors: Iterable<[string, tf.Tensor]>,
  layout?: HeadLayout,
): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, t] of tensors) {
    if (!hasTorchEntry(name)) continue;
    const torch = toTorchTensor(name, t.shape, t.dataSync() as Float32Array, layout);
    writeNpy(join(dir, `${torch.name}.npy`), {
      data: torch.data as Float32Array,
      shape: torch.shape,
    });
  }
}

function exportView(path: string, t: tf.Tensor4D): void {
  const v = nhwcToNchw(t.dataSync() as Float32Array, t.shape);
  writeNpy(path, v);
}

/** The batch in reverse order (every crop and the indices), as new tensors. */
function reversedBatch(b: TwoViewBatch): TwoViewBatch {
  const perm = Int32Array.from(b.indexArray, (_, i) => b.indexArray.length - 1 - i);
  const reverse = <T extends tf.Tensor>(x: T) => shuffleRows(x, perm).shuffled;
  const crops = b.crops.map(reverse);
  return {
    ...b,
    x1: crops[0]!,
    x2: crops[1]!,
    crops,
    indices: reverse(b.indices),
    indexArray: Int32Array.from(perm, (j) => b.indexArray[j]!),
  };
}

/**
 * Contrast's own float32 noise at a step: runs the step on the batch in reverse
 * order (mathematically the same step for an order-invariant method), records
 * it, and restores the whole training state (`stateBundle` / `loadState`, as an
 * exact resume does). Returns the function that compares it with the real
 * step's record, once that step ran.
 */
function probeSelfNoise(
  side: ContrastSide,
  b: TwoViewBatch,
  lr: number,
): (real: StepRecord) => NonNullable<StepRecord['selfNoise']> {
  const { h } = side;
  const bundle = h.session.stateBundle();
  const snapshot = {
    tensors: Object.fromEntries(Object.entries(bundle.tensors).map(([k, t]) => [k, tf.clone(t)])),
    values: structuredClone(bundle.values),
  };
  const reversed = reversedBatch(b);
  const out = h.stepOn(reversed, lr);
  const probe: StepRecord = {
    loss: out.loss.dataSync()[0]!,
    gradNorms: side.grads,
    bn: bnValues(side),
  };
  tf.dispose([out.loss, ...Object.values(out.metrics)]);
  disposeBatch(reversed);
  side.take(); // the draws are the real step's too (the restored stream draws them again)
  h.session.loadState(snapshot);
  return (real) => {
    const { loss, gradNorm, bn } = differences(probe, real).diff;
    return { loss, gradNorm, bn };
  };
}

/**
 * Writes the training state of a side to `dir` in torch names and layouts:
 * weights/ (the online network with its BN buffers and predictor), key/ (the
 * momentum key encoder or BYOL's target), the optimizer's state (see
 * exportOptimizerState; not with `withOptimizer` false) and `<state>.npy` (the
 * queue or bank). Not written: the queue pointer and NCE's normalising constant
 * Z, which the PyTorch port keeps itself (the pointer advances by the batch size
 * on both sides; Z is estimated once, from the first batch, on both sides).
 */
function exportState(
  side: ContrastSide,
  method: ParityMethod,
  dir: string,
  withOptimizer = true,
): void {
  const { h, layout } = side;
  exportWeights(join(dir, 'weights'), onlineVariables(h), layout);
  const key = keyTensors(h);
  if (key.length > 0) exportWeights(join(dir, 'key'), key, layout);
  const state = strategyState(h, method);
  if (state)
    writeNpy(join(dir, `${method.state}.npy`), {
      data: state.dataSync() as Float32Array,
      shape: state.shape,
    });
  if (withOptimizer) exportOptimizerState(side, dir);
}

/**
 * The optimizer's state per trained parameter, in torch names and layouts:
 * SGD / LARS: opt/ (the momentum buffers); AdamW: adam/exp_avg/, adam/exp_avg_sq/
 * (torch.optim.AdamW's state names) and adam/step.json (each parameter's update
 * count; 0 for one frozen so far, whose moments are zero).
 * @throws ContractError when a trained variable is not in the online network or a slot is missing.
 */
function exportOptimizerState(side: ContrastSide, dir: string): void {
  const { h, layout } = side;
  const { tensors, values } = h.session.optimizer.state();
  const names = methodParameters(h.method).map((p) => {
    const name = side.nameOf.get(p.name);
    if (!name) {
      throw new ContractError(`parity: trained variable ${p.name} is not in the online network`, {
        hint: "a method's parameterGroups() may only list the encoder's and the predictor's variables",
      });
    }
    return name;
  });
  const slot = (prefix: string) =>
    names.map((name, i): [string, tf.Tensor] => {
      const t = tensors[`${prefix}/${i}`];
      if (!t) {
        throw new ContractError(`parity: the optimizer has no ${prefix}/${i} for ${name}`, {
          hint: 'the step parity exports the state of sgd, lars (momentum_buffer) and adamw (exp_avg, exp_avg_sq)',
        });
      }
      return [name, t];
    });
  if (h.config.optim.optimizer !== 'adamw') {
    exportWeights(join(dir, 'opt'), slot('momentum_buffer'), layout);
    return;
  }
  exportWeights(join(dir, 'adam', 'exp_avg'), slot('exp_avg'), layout);
  exportWeights(join(dir, 'adam', 'exp_avg_sq'), slot('exp_avg_sq'), layout);
  const counts = values.step as number[];
  const steps = Object.fromEntries(names.map((n, i) => [torchName(n, layout), counts[i]!]));
  writeFileAtomic(join(dir, 'adam', 'step.json'), `${JSON.stringify(steps)}\n`);
}

/**
 * Writes one batch for the PyTorch side: the two global views (`-query`, `-key`),
 * further crops of a multi-crop batch (`-crop2`, `-crop3`, ...) and the indices.
 */
function exportBatch(prefix: string, b: TwoViewBatch): void {
  exportView(`${prefix}-query.npy`, b.x1);
  exportView(`${prefix}-key.npy`, b.x2);
  b.crops.slice(2).forEach((c, v) => exportView(`${prefix}-crop${v + 2}.npy`, c));
  writeNpy(`${prefix}-indices.npy`, { data: b.indexArray, shape: [b.indexArray.length] });
}

/** What the PyTorch port reads of a run: the method, model, loss, optimiser, schedule and layout. */
function sideManifest(
  side: ContrastSide,
  method: ParityMethod,
  o: StepParityOptions,
  lrs: number[],
  imageSize: number,
): Record<string, unknown> {
  const { h, layout } = side;
  const groups = Object.fromEntries(
    [...onlineVariables(h).keys()]
      .filter(hasTorchEntry)
      .map((n) => [torchName(n, layout), parameterGroup(torchName(n, layout), side.resnet)]),
  );
  return {
    method: method.module,
    model: h.config.model,
    channels: 1,
    temperature: h.config.loss.temperature,
    loss: h.config.loss,
    strategy: h.config.strategy,
    optim: h.config.optim,
    views: h.config.data.views ?? null,
    lrs,
    totalSteps: o.steps,
    stepsPerEpoch: h.session.stepsPerEpoch,
    imageSize,
    datasetSize: h.config.data.trainSubset,
    groups,
    fixedLr: fixedLrNames(side),
    bnOrder: side.bnOrder.map(([which, , torch]) => [which, torch]),
    state: method.state ?? null,
  };
}

/**
 * Runs `o.steps` Contrast steps of `method` and writes everything PyTorch needs
 * to run the same steps to `dir` (see python/step.py): initial weights,
 * the queue or bank, each step's batch (and draws), learning rates, parameter
 * groups (and which keep the unscheduled lr) and BN buffer order. With `sync`,
 * also the state before every step and after the last (state-NNN/, see
 * `exportState`) and each step's gradients (grad-NNN/), for the synced
 * comparison in which each step starts from Contrast's state, and measures
 * Contrast's own float32 noise per step (`selfNoise`). Returns Contrast's
 * per-step records.
 * @throws ContractError when a trained variable or its optimizer state cannot be exported.
 */
export function runContrastSide(
  method: ParityMethod,
  o: StepParityOptions,
  dir: string,
  plugins: Plugin[],
  options: { sync?: boolean; dataset?: TrainingDataset } = {},
): StepRecord[] {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const side = openSide(method, o, plugins, options.dataset);
  const { h, layout } = side;
  const stateDir = (i: number) => join(dir, `state-${nnn(i)}`);
  side.keepGradients = options.sync ?? false;
  try {
    exportState(side, method, dir, false);
    const lrs = Array.from({ length: o.steps }, (_, i) =>
      scheduledLr(h.config.optim, i, o.steps, h.session.stepsPerEpoch),
    );
    const records: StepRecord[] = [];
    let imageSize = 0; // the views' side (a ViT's patch grid depends on it)
    for (let i = 0; i < o.steps; i++) {
      const b = h.nextBatch();
      imageSize = b.x1.shape[1];
      const prefix = join(dir, `batch-${nnn(i)}`);
      exportBatch(prefix, b);
      if (options.sync) exportState(side, method, stateDir(i));
      h.clock.step = i; // as the trainer does: schedules see the steps completed
      const probe =
        options.sync && method.orderInvariant !== false
          ? probeSelfNoise(side, b, lrs[i]!)
          : undefined;
      const out = h.stepOn(b, lrs[i]!);
      const loss = out.loss.dataSync()[0]!;
      tf.dispose([out.loss, ...Object.values(out.metrics)]);
      disposeBatch(b);
      for (const [name, a] of Object.entries(side.take())) {
        writeNpy(`${prefix}-${name}.npy`, { data: a, shape: [a.length] });
      }
      const st = strategyState(h, method);
      const record: StepRecord = {
        loss,
        gradNorms: side.grads,
        bn: bnValues(side),
        ...(st ? { state: st.dataSync() as Float32Array } : {}),
      };
      if (probe) record.selfNoise = probe(record);
      if (options.sync) exportWeights(join(dir, `grad-${nnn(i)}`), side.gradients, layout);
      records.push(record);
    }
    if (options.sync) exportState(side, method, stateDir(o.steps));
    const manifest = sideManifest(side, method, o, lrs, imageSize);
    writeFileAtomic(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);
    return records;
  } finally {
    tf.dispose(side.gradients.map(([, g]) => g));
    h.dispose();
  }
}
