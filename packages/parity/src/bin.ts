#!/usr/bin/env node
import 'reflect-metadata';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '@contrast/backend';
import { writeFileAtomic, type Plugin } from '@contrast/core';
import { momentumQueuePlugin } from '@contrast/plugin-momentum-queue';
import { createCatalog, createStepHarness } from '@contrast/trainer';
import { AUGMENT_CASES, DEFAULT_AUGMENT_OPTIONS, runAugmentParity } from './augment.js';
import { augmentMarkdown } from './augment-report.js';
import { learningReport, runContrastLearning, runTorchLearning } from './learning.js';
import { PARITY_METHODS, parityPlugins } from './methods.js';
import { DEFAULT_STEP_OPTIONS, TINY_STEP_OPTIONS } from './step.js';
import { writeStepFixture } from './fixture.js';
import { runStepParity, stepParityMarkdown } from './step-parity.js';
import { OPTIM_CASES, optimDiffs, optimProblem, runContrastOptim, runTorchOptim } from './optim.js';

const HELP = `pnpm parity [step] [augment] [options]
pnpm parity learning --side contrast|pytorch --seed S [options]
pnpm parity learning report

Compares Contrast with a PyTorch port (written from the papers and torchvision's
documented semantics) in the cached torch venv. Reports go to runs/parity/
(markdown + JSON). Without a subcommand: step, then augment.

  step       identical inputs: Contrast's initial weights, augmented batches, queue
             or bank and draws handed to PyTorch; N steps of every built-in method;
             per step the loss, gradient norm per parameter group, BN running
             statistics and the queue / bank. Synced (each step from Contrast's
             state before it, its optimizer step and EMA each in isolation): the first
             step beyond float32 tolerance, which sets the exit code. Free-running
             trajectories: the drift beside PyTorch float32's own
  optim      the optimizer step alone: AdamW (global and per-parameter clipping) and
             SGD with scheduled lr and wd, no-norm-bias decay and a frozen group,
             against torch.optim on a fixed gradient sequence (within 1e-6)
  augment    Contrast's augmentations against torchvision's on the same images:
             crop area and aspect, per-view mean and std, per transform, and the
             loss of one frozen encoder on both pipelines' views (two-sample tests)
  learning   the recipe of the learning-parity report, one seed of one side per
             call (about 15 minutes each); 'learning report' tabulates the runs

  --steps N        step: steps per method (default ${DEFAULT_STEP_OPTIONS.steps})
  --views N        augment: views per case (default ${DEFAULT_AUGMENT_OPTIONS.views})
  --side S         learning: contrast or pytorch
  --seed S         learning: the seed of the run (report: every run in runs/parity/learning)
  --methods TEXT   only methods whose name contains TEXT
  --keep           keep the exchanged arrays (runs/parity/step/<method>)
  --tiny           step: the suite's tiny model (ConvNet 4-8-16, batch 8, 3 steps)
  --fixture FILE   step: also store PyTorch's records there (the suite's fixture:
                   pnpm parity step --tiny --fixture packages/parity/src/fixtures/step-tiny.json)
  --out DIR        where reports go (default runs/parity)
`;

/** `pnpm parity optim`: the largest parameter difference per case; fails beyond 1e-6. */
function optim(): boolean {
  let ok = true;
  for (const [optimizer, clip] of OPTIM_CASES) {
    const p = optimProblem(clip, optimizer);
    const ours = runContrastOptim(p);
    const worst = Math.max(...optimDiffs(ours.trajectory, runTorchOptim(p, ours.steps)));
    ok = ok && worst < 1e-6;
    process.stdout.write(
      `optim ${optimizer}, ${clip} clipping: max |diff| ${worst.toExponential(2)}\n`,
    );
  }
  return ok;
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

function writeReport(dir: string, name: string, markdown: string, json: unknown): string {
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `${name}-${stamp()}`);
  writeFileAtomic(`${base}.json`, `${JSON.stringify(json, null, 1)}\n`);
  writeFileAtomic(`${base}.md`, `${markdown}\n`);
  return base;
}

async function step(values: {
  steps?: string;
  methods?: string;
  keep?: boolean;
  tiny?: boolean;
  fixture?: string;
  out: string;
}) {
  const base0 = values.tiny ? TINY_STEP_OPTIONS : DEFAULT_STEP_OPTIONS;
  const steps = Number(values.steps ?? base0.steps);
  if (!Number.isInteger(steps) || steps < 1)
    throw new Error(`--steps must be a positive integer, got '${values.steps}'`);
  const methods = PARITY_METHODS.filter((m) => !values.methods || m.name.includes(values.methods));
  if (methods.length === 0) {
    throw new Error(
      `--methods '${values.methods}' matches none of: ${PARITY_METHODS.map((m) => m.name).join(', ')}`,
    );
  }
  const o = { ...base0, steps };
  const results = runStepParity(o, methods, join(values.out, 'step'), parityPlugins(), {
    keep: values.keep ?? false,
  });
  const md = stepParityMarkdown(o, results);
  if (values.fixture) writeStepFixture(values.fixture, o, results);
  const base = writeReport(values.out, 'step', md, {
    options: o,
    results: results.map(({ method, state, synced, trajectory, measured, seconds }) => ({
      method,
      state,
      synced,
      trajectory,
      measured,
      seconds,
    })),
  });
  process.stdout.write(`${md}\n\nwritten: ${base}.md, ${base}.json\n`);
  return results.every((r) => !r.synced.firstDivergent);
}

/**
 * The frozen encoder the augmentation report scores views with: the default
 * ConvNet after `steps` MoCo steps (a random one would barely tell views apart).
 */
function frozenEncoder(steps: number) {
  const h = createStepHarness(
    {
      name: 'parity-frozen',
      seed: 0,
      data: { dataset: 'fashion-mnist', prefetch: 0 },
      model: { encoder: 'convnet', width: 1, dim: 128 },
      strategy: { name: 'momentum-queue', queueSize: 4096, momentum: 0.99 },
      loss: { temperature: 0.1 },
      optim: { batchSize: 256, lr: 0.03, weightDecay: 5e-4 },
    },
    createCatalog([momentumQueuePlugin()] as Plugin[]),
  );
  h.run(steps);
  return { encoder: h.encoder, model: h.config.model, dispose: () => h.dispose() };
}

async function augment(values: { views?: string; out: string }) {
  const views = Number(values.views ?? DEFAULT_AUGMENT_OPTIONS.views);
  if (!Number.isInteger(views) || views < 100)
    throw new Error(`--views must be an integer >= 100, got '${values.views}'`);
  const o = { ...DEFAULT_AUGMENT_OPTIONS, views };
  console.error('augmentation parity: training the frozen encoder (150 MoCo steps of the ConvNet)');
  const frozen = frozenEncoder(150);
  try {
    const result = runAugmentParity(join(values.out, 'augment'), o, frozen, (l) =>
      console.error(l),
    );
    const md = augmentMarkdown(o, result);
    const base = writeReport(values.out, 'augment', md, {
      options: o,
      cases: AUGMENT_CASES,
      result,
    });
    process.stdout.write(`${md}\n\nwritten: ${base}.md, ${base}.json\n`);
    return result.cases.every((c) => c.tests.every((t) => t.p >= result.alpha));
  } finally {
    frozen.dispose();
  }
}

async function learning(
  positionals: string[],
  values: { side?: string; seed?: string; out: string },
) {
  const dir = join(values.out, 'learning');
  if (positionals[0] === 'report') {
    const md = learningReport(dir, (l) => console.error(l));
    process.stdout.write(
      `${md}\nwritten: ${join(dir, 'report.md')}, ${join(dir, 'report.json')}\n`,
    );
    return true;
  }
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0)
    throw new Error(`learning needs --seed N (N >= 0), got '${values.seed}'`);
  const log = (l: string) => console.error(l);
  const run =
    values.side === 'contrast'
      ? await runContrastLearning(seed, dir, parityPlugins())
      : values.side === 'pytorch'
        ? runTorchLearning(seed, dir, log)
        : undefined;
  if (!run)
    throw new Error(`learning needs --side contrast or --side pytorch, got '${values.side}'`);
  for (const e of run.epochs)
    log(
      `${run.side} seed ${seed} epoch ${e.epoch}: kNN ${(100 * e.knn).toFixed(2)}%, loss ${e.loss.toFixed(3)}`,
    );
  return true;
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      steps: { type: 'string' },
      views: { type: 'string' },
      side: { type: 'string' },
      seed: { type: 'string' },
      methods: { type: 'string' },
      keep: { type: 'boolean', default: false },
      tiny: { type: 'boolean', default: false },
      fixture: { type: 'string' },
      out: { type: 'string', default: join('runs', 'parity') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  await initBackend('tensorflow');
  if (positionals[0] === 'learning') return (await learning(positionals.slice(1), values)) ? 0 : 1;
  const commands = positionals.length > 0 ? positionals : ['step', 'augment'];
  let ok = true;
  for (const c of commands) {
    if (c === 'step') ok = (await step(values)) && ok;
    else if (c === 'augment') ok = (await augment(values)) && ok;
    else if (c === 'optim') ok = optim() && ok;
    else {
      throw new Error(
        `unknown subcommand '${c}'; use step, augment, optim or learning (see --help)`,
      );
    }
  }
  return ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`parity: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
