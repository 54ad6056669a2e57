import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, type Plugin } from '@contrast/core';
import {
  compareSteps,
  FLOOR,
  NOISE_FACTOR,
  SELF_CAP,
  SELF_FACTOR,
  UPDATE_NOISE_FACTOR,
  type MethodComparison,
  type Quantity,
} from './compare.js';
import type { ParityMethod } from './methods.js';
import { readNpy } from './npy.js';
import { runPython } from './python.js';
import type { StepRecord } from './record.js';
import { runContrastSide, type StepParityOptions } from './step.js';

export interface MethodResult {
  method: string;
  /** The strategy state compared ('queue' / 'bank'), if any. */
  state?: string;
  /** Free-running trajectories from the same initial state: the drift, for information. */
  trajectory: MethodComparison;
  /** Every step started from Contrast's state before it: the verdict. */
  synced: MethodComparison;
  /** What the synced comparison measured besides the common quantities. */
  measured: { ema: boolean; selfNoise: boolean };
  /** PyTorch's free-running records in float32 and float64 (what a stored fixture keeps). */
  torch: StepRecord[];
  torch64: StepRecord[];
  /** Wall time: Contrast's side (steps, self-noise probes, exports); PyTorch's four runs. */
  seconds: { contrast: number; pytorch: number };
}

/**
 * The PyTorch side's records (python/step.py's output in `dir`/torch,
 * torch64, and with `synced` torch-synced, torch64-synced).
 */
export function readTorchRecords(
  dir: string,
  steps: number,
  options: { withState: boolean; float64?: boolean; synced?: boolean },
): StepRecord[] {
  const out = join(
    dir,
    (options.float64 ? 'torch64' : 'torch') + (options.synced ? '-synced' : ''),
  );
  const json = JSON.parse(readFileSync(join(out, 'steps.json'), 'utf8')) as {
    steps: Pick<StepRecord, 'loss' | 'gradNorms' | 'updates'>[];
  };
  if (json.steps.length !== steps)
    throw new Error(`PyTorch ran ${json.steps.length} of ${steps} steps`);
  return json.steps.map((s, i) => {
    const n = String(i).padStart(3, '0');
    return {
      ...s,
      bn: readNpy(join(out, `bn-${n}.npy`)).data as Float32Array,
      ...(options.withState
        ? { state: readNpy(join(out, `state-${n}.npy`)).data as Float32Array }
        : {}),
    };
  });
}

const slug = (s: string) =>
  s
    .replace(/[^\w]+/g, '-')
    .replace(/^-|-$/g, '')
    .toLowerCase();

/**
 * Step parity for each method: Contrast's steps and exported inputs, the same
 * steps in PyTorch, and the comparison. Exchange files go to `dir`/<method>
 * (removed afterwards unless `keep`).
 */
export function runStepParity(
  o: StepParityOptions,
  methods: ParityMethod[],
  dir: string,
  plugins: Plugin[],
  options: { keep?: boolean; log?: (l: string) => void } = {},
): MethodResult[] {
  const log = options.log ?? ((l: string) => console.error(l));
  return methods.map((m) => {
    const work = join(dir, slug(m.name));
    log(`step parity: ${m.name} (${o.steps} steps)`);
    const t0 = performance.now();
    const ours = runContrastSide(m, o, work, plugins, { sync: true });
    const t1 = performance.now();
    runPython('step.py', [work], log);
    runPython('step.py', [work, 'float64'], log);
    runPython('step.py', [work, 'float32', 'synced'], log);
    runPython('step.py', [work, 'float64', 'synced'], log);
    const t2 = performance.now();
    const withState = m.state !== undefined;
    const torch = readTorchRecords(work, o.steps, { withState });
    const torch64 = readTorchRecords(work, o.steps, { withState, float64: true });
    const trajectory = compareSteps(ours, torch, torch64);
    const torchSynced = readTorchRecords(work, o.steps, { withState, synced: true });
    const synced = compareSteps(
      ours,
      torchSynced,
      readTorchRecords(work, o.steps, { withState, float64: true, synced: true }),
      { synced: true },
    );
    if (options.keep) {
      const summary = ours.map((r) => ({ loss: r.loss, gradNorms: r.gradNorms }));
      writeFileAtomic(join(work, 'contrast-steps.json'), `${JSON.stringify(summary)}\n`);
    } else {
      rmSync(work, { recursive: true, force: true });
    }
    const f = synced.firstDivergent;
    log(
      `  synced steps, largest relative difference: loss ${synced.largest.loss.toExponential(1)}, ` +
        `grad norm ${synced.largest.gradNorm.toExponential(1)} ` +
        `(own noise ${synced.largestSelfNoise.gradNorm.toExponential(1)}); ` +
        (f ? `first divergent step ${f.step + 1} (${f.quantity})` : 'within float32 tolerance') +
        `; trajectory loss drift ${trajectory.largest.loss.toExponential(1)} ` +
        `(PyTorch float32 from float64: ${trajectory.largestNoise.loss.toExponential(1)})`,
    );
    return {
      method: m.name,
      ...(m.state ? { state: m.state } : {}),
      trajectory,
      synced,
      measured: {
        ema: torchSynced.some((r) => r.updates?.ema !== undefined),
        selfNoise: ours.some((r) => r.selfNoise !== undefined),
      },
      torch,
      torch64,
      seconds: { contrast: (t1 - t0) / 1000, pytorch: (t2 - t1) / 1000 },
    };
  });
}

const e = (x: number) => (x === 0 ? '0' : x.toExponential(1));

/** The report's first paragraph: the model, data and optimiser each side runs. */
function setupText(o: StepParityOptions): string {
  const m = o.model;
  return (
    `${m.encoder} (width ${m.width}, ${m.stem ?? 'cifar'} stem, dim ${m.dim}), batch ${o.batchSize}, ` +
    `Fashion-MNIST views (first ${o.trainSubset} images), queue ${o.size.queue}, bank draws ` +
    `${o.size.negatives}, predictor hidden ${o.size.predictorHidden}, BN projector hidden ` +
    `${o.size.projectorHidden} (BYOL, SimSiam), SGD lr 0.03 cosine over the steps (SimSiam's ` +
    "predictor: fixed), momentum 0.9, wd 5e-4; moco-v3 (ViT, AdamW) instead runs MoCo v3's ViT " +
    "recipe on a tiny ViT of its own (patch 7, 2 blocks of width 32, MoCo v3's init with the fixed " +
    'sin-cos positions; 3-layer BN projector): AdamW lr 1e-3, wd 0.1 without decay for norms and ' +
    "biases, a linear warm-up over a quarter epoch, the patch projection frozen (PyTorch: timm's " +
    'VisionTransformer, torch.optim.AdamW with its own groups and schedule). Both sides start ' +
    "from Contrast's weights and queue / bank and train on Contrast's augmented batches (and its " +
    'sampled negatives and shuffle permutations). PyTorch also runs the steps in float64 from the same ' +
    'float32 inputs: its distance from PyTorch float32 is the float32 noise floor.'
  );
}

/** The step-parity section of the report (markdown). */
export function stepParityMarkdown(o: StepParityOptions, results: MethodResult[]): string {
  const pair = (c: MethodComparison, q: Quantity) => `${e(c.largest[q])} (${e(c.largestNoise[q])})`;
  const triple = (r: MethodResult, q: Quantity) =>
    `${e(r.synced.largest[q])} (${e(r.synced.largestNoise[q])}; ` +
    `${r.measured.selfNoise ? e(r.synced.largestSelfNoise[q]) : '-'})`;
  const lines = [
    `## Step parity: identical inputs, ${o.steps} steps`,
    '',
    setupText(o),
    '',
    `### Synced steps: each of the ${o.steps} steps from Contrast's state before it`,
    '',
    "Before every step PyTorch loads Contrast's state (online and key / target networks with " +
      'their BN buffers, SGD momentum buffers or AdamW moments and step counts, queue or bank; the port keeps its own queue pointer and ' +
      'NCE constant, which advance and are estimated the same way), so each step is compared alone, free of ' +
      "the drift a trajectory accumulates. Compared per step: the loss, each parameter group's gradient " +
      'norm, the BN running statistics and the queue / bank after the step; and, each in isolation on ' +
      "Contrast's own inputs, the optimizer step (torch.optim.SGD / AdamW applied to Contrast's gradient and " +
      "state: 'update') and the EMA of the key / target (the PyTorch port's, towards Contrast's updated " +
      "network: 'EMA update'), as relative differences of the update. Relative differences are max " +
      '|a - b| / max |b|, the largest over all steps: Contrast vs PyTorch, and in brackets the float32 ' +
      "noise floors: PyTorch float32 vs float64; then Contrast's own, the same step from the same state " +
      'on the batch in reverse order (the same mathematics, other summation orders; not measured for ' +
      'shuffle BN, whose shuffled sub-batches would then hold other images). A step diverges when a ' +
      `quantity exceeds max(floor, ${NOISE_FACTOR} x PyTorch's noise (${UPDATE_NOISE_FACTOR} x for the ` +
      `updates, whose noise is the rounding of float32 weights on both sides), ${SELF_FACTOR} x ` +
      `Contrast's noise capped at ${SELF_CAP}) at that step; floors: loss ${FLOOR.loss}, gradient norm ${FLOOR.gradNorm}, BN ` +
      `${FLOOR.bn}, queue / bank ${FLOOR.state}, updates ${FLOOR.update}.`,
    '',
    '| method | first divergent step | loss | grad norm | BN running stats | queue / bank | update | EMA update |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    const c = r.synced;
    const f = c.firstDivergent;
    const first = f
      ? `${f.step + 1} (${f.quantity} ${e(f.diff)} > ${e(f.tolerance)}, the ${f.by} term)`
      : 'none';
    const ema = r.measured.ema ? pair(c, 'ema') : '-';
    lines.push(
      `| ${r.method} | ${first} | ${triple(r, 'loss')} | ${triple(r, 'gradNorm')} | ${triple(r, 'bn')} | ` +
        `${r.state ? pair(c, 'state') : '-'} | ${pair(c, 'update')} | ${ema} |`,
    );
  }
  lines.push(
    '',
    `### Trajectories: ${o.steps} free-running steps from the same initial state`,
    '',
    'Each side follows its own trajectory. Training amplifies rounding step after step, so the ' +
      "trajectories drift apart; the drift is set beside PyTorch float32's own drift from " +
      'float64 (in brackets), the largest over all steps. TensorFlow accumulates BN and conv reductions ' +
      "in float32 where PyTorch's CPU kernels use float64, so Contrast's per-step rounding, and with it " +
      'its drift, is larger (step 1 against float64, last column).',
    '',
    '| method | loss | grad norm | BN running stats | queue / bank | loss at step 1 / last, ours (PyTorch) | step 1 vs float64: loss, grad norm (ours / PyTorch) |',
    '|---|---:|---:|---:|---:|---:|---:|',
  );
  for (const r of results) {
    const c = r.trajectory;
    const [s0, sl] = [c.steps[0]!, c.steps.at(-1)!];
    lines.push(
      `| ${r.method} | ${pair(c, 'loss')} | ${pair(c, 'gradNorm')} | ${pair(c, 'bn')} | ` +
        `${r.state ? pair(c, 'state') : '-'} | ` +
        `${s0.loss.ours.toFixed(5)} (${s0.loss.torch.toFixed(5)}) / ${sl.loss.ours.toFixed(4)} (${sl.loss.torch.toFixed(4)}) | ` +
        `${e(s0.vsExact.loss)} / ${e(s0.noise.loss)}, ${e(s0.vsExact.gradNorm)} / ${e(s0.noise.gradNorm)} |`,
    );
  }
  return lines.join('\n');
}
