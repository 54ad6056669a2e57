#!/usr/bin/env node
import 'reflect-metadata';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { defaultRows, median, quickRows, rowName, type RowResult, type RowSpec } from './spec.js';
import { dataMain } from './data-bench.js';
import { workersMain } from './workers-bench.js';
import { runJsonChild } from './json-child.js';
import { ensureTorchVenv, torchSeesCuda } from './torch.js';
import { isContrastError, UsageError } from '@contrast/core';
import { diagnoseGpu, gpuUnavailableError, probeGpu } from '@contrast/backend';

const HELP = `pnpm bench [options]

Benchmarks the MoCo step and the raw encoder step (ResNet-18, CIFAR stem), one
row per child process: img/s (median of timed steps after warm-up), the step's
phases, peak RSS, tensors alive after each step, the augmentation pipeline's own
img/s, training img/s with data loading, the process's 2048x2048 matmul GFLOP/s,
and a 200-step leak check. Writes a JSON file and a markdown table.

  --vs-pytorch     run each row in PyTorch too (cached venv, installed on first use),
                   alternating ours / PyTorch (A B A B) so machine noise cancels
  --gpu            every row on the GPU (the tensorflow-gpu backend, 'contrast setup --gpu'),
                   and PyTorch on the same GPU when the cached venv's torch sees CUDA;
                   refuses with the coded error (exit 2) where no GPU is usable
  --quick          only the reference rows: 32x32x3, K 4096, MoCo b128 and b256, encoder b128
  --rows TEXT      only rows whose name contains TEXT (e.g. "moco 32x32x3 b128")
  --rounds N       A/B rounds per row (default 2 with --vs-pytorch, else 1)
  --warmup N       untimed steps per row (default 2)
  --steps N        timed steps per row (default 5)
  --no-leak        skip the 200-step leak check
  --out DIR        where to write results (default runs/bench)
  --data           the streaming image-folder benchmark instead (pnpm bench --data --help)
  --workers N      the data-parallel benchmark instead (pnpm bench --workers 2 --help)
`;

interface RowReport {
  name: string;
  spec: RowSpec;
  ours: RowResult[];
  pytorch: RowResult[];
}

const f1 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(1));
const f2 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(2));

function summarize(r: RowReport) {
  const ours = median(r.ours.map((x) => x.imgPerSec));
  const torch = median(r.pytorch.map((x) => x.imgPerSec));
  const rssOurs = Math.max(...r.ours.map((x) => x.peakRssMb));
  const rssTorch = r.pytorch.length ? Math.max(...r.pytorch.map((x) => x.peakRssMb)) : Number.NaN;
  const o = r.ours[0]!;
  const stepSec = median(r.ours.flatMap((x) => x.stepSeconds));
  const b = o.breakdown ?? {};
  const overhead =
    r.spec.mode === 'moco' && o.logitsSeconds !== undefined
      ? (o.logitsSeconds + (b.enqueue ?? 0) + (b.ema ?? 0)) / stepSec
      : undefined;
  const tensors = o.tensorsAfterStep ?? [];
  return {
    ours,
    torch,
    ratio: ours / torch,
    rssOurs,
    rssTorch,
    rssRatio: rssOurs / rssTorch,
    overhead,
    tensorsPerStep: tensors.length > 1 ? (tensors.at(-1)! - tensors[0]!) / (tensors.length - 1) : 0,
    aug: median(r.ours.map((x) => x.augImgPerSec ?? Number.NaN)),
    train: median(r.ours.map((x) => x.trainImgPerSec ?? Number.NaN)),
    matmulOurs: median(r.ours.map((x) => x.matmulGflops)),
    matmulTorch: median(r.pytorch.map((x) => x.matmulGflops)),
  };
}

function table(reports: RowReport[], leak?: { steps: number; tensors: number[] }): string {
  const vs = reports.some((r) => r.pytorch.length > 0);
  const lines = [
    vs
      ? '| row | ours img/s | PyTorch img/s | ratio | peak RSS ours / PyTorch (MB) | RSS ratio | MoCo overhead | tensors +/step | aug img/s | train img/s (% of step) | matmul GFLOP/s ours / PyTorch |'
      : '| row | img/s | peak RSS (MB) | MoCo overhead | tensors +/step | aug img/s | train img/s (% of step) | matmul GFLOP/s |',
    vs
      ? '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
      : '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of reports) {
    const s = summarize(r);
    const overhead = s.overhead === undefined ? '-' : `${(100 * s.overhead).toFixed(1)}%`;
    const train = `${f1(s.train)} (${((100 * s.train) / s.ours).toFixed(0)}%)`;
    lines.push(
      vs
        ? `| ${r.name} | ${f1(s.ours)} | ${f1(s.torch)} | ${f2(s.ratio)}x | ${s.rssOurs.toFixed(0)} / ${s.rssTorch.toFixed(0)} | ${f2(s.rssRatio)}x | ${overhead} | ${s.tensorsPerStep} | ${s.aug.toFixed(0)} | ${train} | ${s.matmulOurs.toFixed(0)} / ${s.matmulTorch.toFixed(0)} |`
        : `| ${r.name} | ${f1(s.ours)} | ${s.rssOurs.toFixed(0)} | ${overhead} | ${s.tensorsPerStep} | ${s.aug.toFixed(0)} | ${train} | ${s.matmulOurs.toFixed(0)} |`,
    );
  }
  // the phases in the order the rows marked them (the method's, with 'backward' and 'optimizer')
  const phases = [...new Set(reports.flatMap((r) => Object.keys(r.ours[0]!.breakdown ?? {})))];
  lines.push('', `| row (ours, seconds per step) | augmentation | ${phases.join(' | ')} |`);
  lines.push(`|---|${'---:|'.repeat(phases.length + 1)}`);
  for (const r of reports) {
    const b = r.ours[0]!.breakdown ?? {};
    const aug = r.spec.batch / (r.ours[0]!.augImgPerSec ?? Number.NaN);
    lines.push(
      `| ${r.name} | ${aug.toFixed(3)} | ${phases.map((p) => (b[p] === undefined ? '-' : b[p].toFixed(3))).join(' | ')} |`,
    );
  }
  if (leak) {
    const t = leak.tensors;
    lines.push(
      '',
      `Leak check: ${leak.steps} MoCo steps with data loading (ResNet-18 width 1/8, 28x28x1, b32): ` +
        `tensors after step 1 = ${t[0]}, after step ${leak.steps} = ${t.at(-1)} ` +
        `(${t.at(-1)! - t[0]!} leaked; min ${Math.min(...t)}, max ${Math.max(...t)})`,
    );
  }
  return lines.join('\n');
}

/** The script that measures one row of ours in a fresh process. */
const CHILD = fileURLToPath(new URL('./child.js', import.meta.url));

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

/** The rows whose name contains `filter` (all without one). @throws UsageError when none does. */
function selectRows(rows: RowSpec[], filter: string | undefined): RowSpec[] {
  if (!filter) return rows;
  const picked = rows.filter((r) => rowName(r).includes(filter));
  if (picked.length === 0) {
    throw new UsageError(`--rows '${filter}' matches no row`, {
      hint: `the rows are:\n  ${rows.map(rowName).join('\n  ')}`,
    });
  }
  return picked;
}

/** Each row `rounds` times in fresh child processes: ours, then PyTorch's when `python` is given. */
function measureRows(rows: RowSpec[], rounds: number, python: string | undefined): RowReport[] {
  const script = fileURLToPath(new URL('../python/moco_step.py', import.meta.url));
  const reports: RowReport[] = [];
  for (const spec of rows) {
    const report: RowReport = { name: rowName(spec), spec, ours: [], pytorch: [] };
    for (let round = 0; round < rounds; round++) {
      const tag = `${report.name} (round ${round + 1}/${rounds})`;
      process.stderr.write(`ours    ${tag} ...`);
      const a = runJsonChild<RowResult>(
        process.execPath,
        [CHILD, JSON.stringify(spec)],
        `ours: ${tag}`,
      );
      report.ours.push(a);
      process.stderr.write(` ${a.imgPerSec.toFixed(1)} img/s, ${a.peakRssMb.toFixed(0)} MB\n`);
      if (python) {
        process.stderr.write(`pytorch ${tag} ...`);
        const b = runJsonChild<RowResult>(
          python,
          [script, JSON.stringify(spec)],
          `pytorch: ${tag}`,
        );
        report.pytorch.push(b);
        process.stderr.write(` ${b.imgPerSec.toFixed(1)} img/s, ${b.peakRssMb.toFixed(0)} MB\n`);
      }
    }
    reports.push(report);
  }
  return reports;
}

/**
 * The PyTorch to compare with: the cached venv's (installed on first use) with
 * --vs-pytorch; on the GPU, only one whose torch sees CUDA (an existing venv is
 * used without --vs-pytorch too).
 * @throws UsageError when --vs-pytorch --gpu finds a torch without CUDA
 */
function pytorchFor(vs: boolean, gpu: boolean): string | undefined {
  if (!gpu) return vs ? ensureTorchVenv() : undefined;
  const python = torchSeesCuda();
  if (python) return python;
  if (vs) {
    throw new UsageError(
      '--vs-pytorch --gpu needs a PyTorch that sees the GPU (torch.cuda.is_available())',
      {
        hint: 'install a CUDA build of torch into the venv (CONTRAST_TORCH_VENV), or drop --vs-pytorch',
      },
    );
  }
  process.stderr.write('no PyTorch with CUDA in the cached venv: the PyTorch column is left out\n');
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--data')) return dataMain(argv.filter((a) => a !== '--data'));
  if (argv.some((a) => a === '--workers' || a.startsWith('--workers='))) return workersMain(argv);
  const { values } = parseArgs({
    args: argv,
    options: {
      'vs-pytorch': { type: 'boolean', default: false },
      gpu: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      rows: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string', default: '2' },
      steps: { type: 'string', default: '5' },
      'no-leak': { type: 'boolean', default: false },
      out: { type: 'string', default: join('runs', 'bench') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const timing = {
    warmup: intFlag('warmup', values.warmup, 0),
    steps: intFlag('steps', values.steps, 1),
  };
  const gpu = values.gpu;
  if (gpu) {
    const problems = diagnoseGpu(probeGpu());
    if (problems.length > 0) throw gpuUnavailableError(problems); // never a CPU run under a GPU label
  }
  const python = pytorchFor(values['vs-pytorch'], gpu);
  const rounds = intFlag('rounds', values.rounds ?? (python ? '2' : '1'), 1);
  const grid = values.quick ? quickRows(timing) : defaultRows(timing);
  const rows = selectRows(
    gpu ? grid.map((r) => ({ ...r, device: 'gpu' as const })) : grid,
    values.rows,
  );
  const started = new Date();
  const reports = measureRows(rows, rounds, python);
  let leak: { steps: number; tensors: number[] } | undefined;
  if (!values['no-leak']) {
    process.stderr.write('leak check (200 steps) ...\n');
    leak = runJsonChild<{ steps: number; tensors: number[] }>(
      process.execPath,
      [CHILD, JSON.stringify({ mode: 'leak', steps: 200, ...(gpu ? { device: 'gpu' } : {}) })],
      'leak check',
    );
  }
  const md = table(reports, leak);
  mkdirSync(values.out, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const base = join(values.out, `bench-${stamp}`);
  writeFileSync(
    `${base}.json`,
    `${JSON.stringify({ started: started.toISOString(), rounds, timing, rows: reports.map((r) => ({ ...r, summary: summarize(r) })), leak }, null, 2)}\n`,
  );
  writeFileSync(`${base}.md`, `${md}\n`);
  process.stdout.write(`${md}\n\nwritten: ${base}.json, ${base}.md\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (isContrastError(e)) {
      // coded errors (bad flags, no usable GPU) exit 2 with their fix, as the contrast command does
      process.stderr.write(`error [${e.code}]: ${e.message}\n`); // the message ends with its fix
      process.exit(2);
    }
    process.stderr.write(`bench: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
