import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, type Plugin } from '@contrast/core';
import { compareSteps, FLOOR, NOISE_FACTOR, type MethodComparison } from './compare.js';
import type { ParityMethod } from './methods.js';
import { readNpy } from './npy.js';
import { runPython } from './python.js';
import { runContrastSide, type StepParityOptions, type StepRecord } from './step.js';

export interface MethodResult {
  method: string;
  /** The strategy state compared ('queue' / 'bank'), if any. */
  state?: string;
  comparison: MethodComparison;
  /** PyTorch's records in float32 and float64 (what a stored fixture keeps). */
  torch: StepRecord[];
  torch64: StepRecord[];
  seconds: { ours: number; torch: number };
}

/** The PyTorch side's records (python/parity/step.py's output in `dir`/torch). */
export function readTorchRecords(
  dir: string,
  steps: number,
  withState: boolean,
  precision: 'torch' | 'torch64' = 'torch',
): StepRecord[] {
  const out = join(dir, precision);
  const json = JSON.parse(readFileSync(join(out, 'steps.json'), 'utf8')) as {
    steps: { loss: number; gradNorms: Record<string, number> }[];
  };
  if (json.steps.length !== steps)
    throw new Error(`PyTorch ran ${json.steps.length} of ${steps} steps`);
  return json.steps.map((s, i) => {
    const n = String(i).padStart(3, '0');
    return {
      ...s,
      bn: readNpy(join(out, `bn-${n}.npy`)).data as Float32Array,
      ...(withState ? { state: readNpy(join(out, `state-${n}.npy`)).data as Float32Array } : {}),
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
    const ours = runContrastSide(m, o, work, plugins);
    const t1 = performance.now();
    runPython('step.py', [work], log);
    const t2 = performance.now();
    runPython('step.py', [work, 'float64'], log);
    const torch = readTorchRecords(work, o.steps, m.state !== undefined);
    const torch64 = readTorchRecords(work, o.steps, m.state !== undefined, 'torch64');
    const comparison = compareSteps(ours, torch, torch64);
    if (options.keep) {
      const summary = ours.map((r) => ({ loss: r.loss, gradNorms: r.gradNorms }));
      writeFileAtomic(join(work, 'contrast-steps.json'), `${JSON.stringify(summary)}\n`);
    } else {
      rmSync(work, { recursive: true, force: true });
    }
    const f = comparison.firstDivergent;
    log(
      `  largest relative difference: loss ${comparison.largest.loss.toExponential(1)}, ` +
        `grad norm ${comparison.largest.gradNorm.toExponential(1)}; ` +
        (f ? `first divergent step ${f.step + 1} (${f.quantity})` : 'within float32 tolerance'),
    );
    return {
      method: m.name,
      ...(m.state ? { state: m.state } : {}),
      comparison,
      torch,
      torch64,
      seconds: { ours: (t1 - t0) / 1000, torch: (t2 - t1) / 1000 },
    };
  });
}

const e = (x: number) => (x === 0 ? '0' : x.toExponential(1));

/** The step-parity section of the report (markdown). */
export function stepParityMarkdown(o: StepParityOptions, results: MethodResult[]): string {
  const m = o.model;
  const lines = [
    `## Step parity: identical inputs, ${o.steps} steps`,
    '',
    `${m.encoder} (width ${m.width}, ${m.stem ?? 'cifar'} stem, dim ${m.dim}), batch ${o.batchSize}, ` +
      `Fashion-MNIST views (first ${o.trainSubset} images), queue ${o.size.queue}, bank draws ` +
      `${o.size.negatives}, predictor hidden ${o.size.predictorHidden}, BN projector hidden ` +
      `${o.size.projectorHidden} (BYOL, SimSiam), SGD lr 0.03 cosine over the steps (SimSiam's ` +
      'predictor: fixed), momentum 0.9, wd 5e-4. Both sides start ' +
      "from Contrast's weights and queue / bank and train on Contrast's augmented batches (and its " +
      'sampled negatives and shuffle permutations). PyTorch also runs the steps in float64: its distance ' +
      'from PyTorch float32 is the float32 noise floor of each step.',
    '',
    'Relative differences, max |a - b| / max |b|, the largest over all steps: Contrast vs PyTorch, and in ' +
      'brackets the float32 noise floor (PyTorch float32 vs float64). A step diverges when a quantity ' +
      `exceeds max(floor, ${NOISE_FACTOR} x the largest noise floor so far); gradient norms are compared as ` +
      `one vector over the parameter groups; floors: loss ${FLOOR.loss}, gradient ` +
      `norm per parameter group ${FLOOR.gradNorm}, BN running statistics ${FLOOR.bn}, queue / bank ${FLOOR.state}.`,
    '',
    '| method | first divergent step | loss | grad norm | BN running stats | queue / bank | step 1: loss, grad norm vs float64 (ours / PyTorch) | loss at step 1 / last, ours (PyTorch) |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    const c = r.comparison;
    const f = c.firstDivergent;
    const first = f ? `${f.step + 1} (${f.quantity} ${e(f.diff)} > ${e(f.tolerance)})` : 'none';
    const pair = (q: 'loss' | 'gradNorm' | 'bn' | 'state') =>
      `${e(c.largest[q])} (${e(c.largestNoise[q])})`;
    const [s0, sl] = [c.steps[0]!, c.steps.at(-1)!];
    lines.push(
      `| ${r.method} | ${first} | ${pair('loss')} | ${pair('gradNorm')} | ${pair('bn')} | ` +
        `${r.state ? pair('state') : '-'} | ${e(s0.vsExact.loss)} / ${e(s0.noise.loss)}, ` +
        `${e(s0.vsExact.gradNorm)} / ${e(s0.noise.gradNorm)} | ` +
        `${s0.loss.ours.toFixed(5)} (${s0.loss.torch.toFixed(5)}) / ${sl.loss.ours.toFixed(4)} (${sl.loss.torch.toFixed(4)}) |`,
    );
  }
  return lines.join('\n');
}
