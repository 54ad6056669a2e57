import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UsageError } from '@contrast/core';
import { loopbackCluster } from '@contrast/distributed';
import type { WorkersRowResult, WorkersRowSpec } from './workers-spec.js';

export const WORKERS_HELP = `pnpm bench --workers N [options]

Data-parallel cost with the real trainer's step on the default experiment
(experiments/moco-fmnist.yaml: MoCo, ConvNet, shuffle BN across workers), and
ResNet-18 (CIFAR stem) on the same data: img/s of 1 worker with all cores'
threads against N workers with cores / N threads each on this machine, the time
per step in all-reduces and all-gathers and their share of the step, and the
scaling efficiency N machines would reach from these measurements (the model
is printed with the numbers it uses).

  --workers N      the workers of the data-parallel rows (>= 2)
  --encoders LIST  convnet,resnet18 (default both)
  --warmup N       untimed steps (default 2)
  --steps N        timed steps (default 10 for the ConvNet, a third of it for ResNet-18)
  --out DIR        where to write results (default runs/bench)
`;

/** The rows: the default experiment's encoder at its batch, and ResNet-18 at a batch that fits minutes. */
const ENCODERS: Record<string, { overrides: string[]; batch: number; stepsDivisor: number }> = {
  convnet: { overrides: [], batch: 256, stepsDivisor: 1 },
  resnet18: {
    overrides: ['model.encoder=resnet18', 'model.stem=cifar'],
    batch: 128,
    stepsDivisor: 3,
  },
};

const CHILD = fileURLToPath(new URL('./workers-child.js', import.meta.url));
const EXPERIMENT = fileURLToPath(new URL('../../../experiments/moco-fmnist.yaml', import.meta.url));

/** Runs one child per spec at once, each with `threads` intra-op threads; their JSON results. */
function runChildren(specs: WorkersRowSpec[], threads: number): Promise<WorkersRowResult[]> {
  return Promise.all(
    specs.map(
      (spec, i) =>
        new Promise<WorkersRowResult>((done, fail) => {
          const child = spawn(process.execPath, [CHILD, JSON.stringify(spec)], {
            stdio: ['ignore', 'pipe', 'pipe'],
            env: {
              ...process.env,
              TF_NUM_INTRAOP_THREADS: String(threads),
              TF_NUM_INTEROP_THREADS: '1',
            },
          });
          let out = '';
          let err = '';
          child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
          child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
          child.once('close', (code) => {
            const line = out
              .trim()
              .split('\n')
              .reverse()
              .find((l) => l.startsWith('{'));
            if (code === 0 && line) done(JSON.parse(line) as WorkersRowResult);
            else fail(new Error(`worker ${i} failed (exit ${code}):\n${err.trim().slice(-2000)}`));
          });
        }),
    ),
  );
}

/** The ring's constants, from a measurement on N workers. */
export interface RingModel {
  /** Latency per ring step, s: the one-float all-reduce / its 2(N-1) steps. */
  alpha: number;
  /** Bytes/s: 2(N-1)/N x gradient bytes / (its all-reduce - the one-float one). */
  bandwidth: number;
}

/** The ring constants from rank 0's measurement on `n` workers. */
export function ringModel(w: WorkersRowResult, n: number): RingModel {
  const tiny = w.tinyAllReduceSeconds!;
  const full = w.gradientAllReduceSeconds!;
  return {
    alpha: tiny / (2 * (n - 1)),
    bandwidth: (((2 * (n - 1)) / n) * 4 * w.gradientFloats) / Math.max(full - tiny, 1e-9),
  };
}

/** What the model takes from the measurements of one encoder's rows. */
export interface ScalingInputs {
  /** Step seconds of one worker alone (all cores), batch B. */
  tCompute: number;
  /** G: the gradient's bytes, all-reduced once per step. */
  gradientBytes: number;
  /** The all-gathers' time per step on the measured N workers, over N - 1 (one ring step's worth). */
  gatherSecondsPerPeer: number;
  /** k: the gather collectives per step (all collectives but the one all-reduce). */
  gathersPerStep: number;
}

/**
 * Predicted efficiency of N machines, weak scaling (each machine runs one
 * worker like the 1-worker row at its batch B; the global batch is N x B),
 * without overlap of communication and compute (as in the step: the
 * all-reduce follows the backward pass):
 *   eff(N)      = t_compute / (t_compute + t_ar(N) + t_gather(N))
 *   t_ar(N)     = 2(N-1)/N * G / BW + 2(N-1) * alpha     (ring all-reduce of G bytes)
 *   t_gather(N) = (N-1) * (g / BW + k * alpha)           (k ring all-gathers of g bytes per worker)
 * where g / BW = the gathers' measured time / (N-1) - k * alpha (at least 0).
 * @param bandwidth BW in bytes/s: the measured one, or a network's
 */
export function scaling(
  n: number,
  m: ScalingInputs,
  ring: RingModel,
  bandwidth = ring.bandwidth,
): { eff: number; tAllReduce: number; tGather: number } {
  const tAllReduce = ((2 * (n - 1)) / n) * (m.gradientBytes / bandwidth) + 2 * (n - 1) * ring.alpha;
  const data = Math.max(0, m.gatherSecondsPerPeer - m.gathersPerStep * ring.alpha);
  const tGather = (n - 1) * ((data * ring.bandwidth) / bandwidth + m.gathersPerStep * ring.alpha);
  return { eff: m.tCompute / (m.tCompute + tAllReduce + tGather), tAllReduce, tGather };
}

/** 10 Gbit/s Ethernet's line rate in bytes/s, for the model's second column. */
const TEN_GBE = 1.25e9;
const SCALING_N = [2, 4, 8, 16, 64];

interface EncoderReport {
  encoder: string;
  batch: number;
  single: WorkersRowResult;
  workers: WorkersRowResult[];
  ring: RingModel;
  inputs: ScalingInputs;
}

const ms = (s: number) => (1000 * s).toFixed(1);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

function report(rows: EncoderReport[], n: number, cores: number): string {
  const lines = [
    `| encoder | global batch | 1 worker x ${cores} threads img/s | ${n} workers x ${Math.max(1, Math.floor(cores / n))} thread img/s | step ms (${n} workers) | all-reduce ms/step (share) | all-gather ms/step (share) | collectives/step | gradient floats |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const w = r.workers[0]!;
    const step = r.batch / w.imgPerSec;
    lines.push(
      `| ${r.encoder} | ${r.batch} | ${r.single.imgPerSec.toFixed(1)} | ${w.imgPerSec.toFixed(1)} | ${ms(step)} | ${ms(w.allReduceSeconds)} (${pct(w.allReduceSeconds / step)}) | ${ms(w.gatherSeconds)} (${pct(w.gatherSeconds / step)}) | ${w.collectivesPerStep} | ${w.gradientFloats} |`,
    );
  }
  lines.push(
    '',
    'Scaling model (weak scaling: N machines, each one worker like the 1-worker row at its batch B):',
    '  eff(N) = t_compute / (t_compute + t_ar(N) + t_gather(N))',
    '  t_ar(N) = 2(N-1)/N * G / BW + 2(N-1) * alpha;  t_gather(N) = (N-1) * (g/BW + k * alpha)',
    "  t_compute: the 1-worker row's median step; G: 4 bytes x gradient floats; k: gather collectives per step;",
    `  measured on ${n} workers: alpha = one-float all-reduce / 2(N-1); BW = 2(N-1)/N * G / (gradient all-reduce - one-float all-reduce);`,
    '  g/BW = the all-gather time per step / (N-1) - k * alpha. BW: loopback on this machine, and 10 GbE (1.25 GB/s, the same alpha).',
    '',
    `| encoder | t_compute ms | G MB | alpha ms | BW GB/s (loopback) | k | ${SCALING_N.map((m) => `eff(${m}) loopback / 10 GbE`).join(' | ')} |`,
    `|---|---:|---:|---:|---:|---:|${SCALING_N.map(() => '---:|').join('')}`,
  );
  for (const r of rows) {
    const effs = SCALING_N.map(
      (m) =>
        `${pct(scaling(m, r.inputs, r.ring).eff)} / ${pct(scaling(m, r.inputs, r.ring, TEN_GBE).eff)}`,
    );
    lines.push(
      `| ${r.encoder} | ${ms(r.inputs.tCompute)} | ${(r.inputs.gradientBytes / 1e6).toFixed(2)} | ${ms(r.ring.alpha)} | ${(r.ring.bandwidth / 1e9).toFixed(2)} | ${r.inputs.gathersPerStep} | ${effs.join(' | ')} |`,
    );
  }
  return lines.join('\n');
}

/** A whole-number flag of at least `min`. @throws UsageError otherwise. */
function intFlag(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`, {
      hint: `e.g. --${name} ${Math.max(min, 2)}`,
    });
  }
  return n;
}

/** `pnpm bench --workers N`: the rows, the model, a JSON and a markdown file. */
export async function workersMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      workers: { type: 'string' },
      encoders: { type: 'string', default: Object.keys(ENCODERS).join(',') },
      warmup: { type: 'string', default: '2' },
      steps: { type: 'string', default: '10' },
      out: { type: 'string', default: join('runs', 'bench') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(WORKERS_HELP);
    return 0;
  }
  const n = intFlag('workers', values.workers, 2);
  const warmup = intFlag('warmup', values.warmup, 1);
  const steps = intFlag('steps', values.steps, 1);
  const encoders = values.encoders.split(',').map((e) => e.trim());
  const unknown = encoders.find((e) => !(e in ENCODERS));
  if (unknown !== undefined) {
    throw new UsageError(`--encoders: unknown encoder '${unknown}'`, {
      hint: `choose from ${Object.keys(ENCODERS).join(', ')}`,
    });
  }
  const cores = availableParallelism();
  const started = new Date();
  const rows: EncoderReport[] = [];
  for (const encoder of encoders) {
    const { overrides, batch, stepsDivisor } = ENCODERS[encoder]!;
    const base = {
      experiment: EXPERIMENT,
      overrides,
      batch,
      warmup,
      steps: Math.max(1, Math.round(steps / stepsDivisor)),
    };
    process.stderr.write(`${encoder} b${batch}: 1 worker x ${cores} threads ...`);
    const [single] = await runChildren([base], cores);
    process.stderr.write(` ${single!.imgPerSec.toFixed(1)} img/s\n`);
    process.stderr.write(`${encoder} b${batch}: ${n} workers ...`);
    const cluster = await loopbackCluster(n);
    const workers = await runChildren(
      cluster.map((_, rank) => ({ ...base, cluster, rank })),
      Math.max(1, Math.floor(cores / n)),
    );
    process.stderr.write(` ${workers[0]!.imgPerSec.toFixed(1)} img/s\n`);
    const w = workers[0]!;
    rows.push({
      encoder,
      batch,
      single: single!,
      workers,
      ring: ringModel(w, n),
      inputs: {
        tCompute: batch / single!.imgPerSec,
        gradientBytes: 4 * w.gradientFloats,
        gatherSecondsPerPeer: w.gatherSeconds / (n - 1),
        gathersPerStep: w.collectivesPerStep - 1,
      },
    });
  }
  const md = report(rows, n, cores);
  mkdirSync(values.out, { recursive: true });
  const base = join(values.out, `bench-workers-${started.toISOString().replace(/[:.]/g, '-')}`);
  writeFileSync(
    `${base}.json`,
    `${JSON.stringify({ started, workers: n, cores, rows }, null, 2)}\n`,
  );
  writeFileSync(`${base}.md`, `${md}\n`);
  process.stdout.write(`${md}\n\nwritten: ${base}.json, ${base}.md\n`);
  return 0;
}
