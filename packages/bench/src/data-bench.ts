import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { indexCacheFiles, writeSyntheticFolder } from '@contrast/data';
import type { DataSpec } from './data-worker.js';
import { runJsonChild } from './json-child.js';

export const DATA_HELP = `pnpm bench --data [stage...] [options]

The streaming image-folder benchmark. Stages (default: all of them, in order,
then clean); run them one at a time to leave the machine to others between them:

  generate   write a folder of --images small JPEGs (96x96, ~3 KB) and one of --small
  startup    open each folder in a fresh process: index built (cache removed), then cached
  decode     the decode pipeline's own img/s: libvips alone, and the stream with augmentation
  train      ResNet-18 MoCo at --size: training img/s with streaming decode vs the step alone
  rss        a real training run (contrast train, --rss-steps steps) on each folder: peak RSS
  report     print the table of what has been measured
  clean      delete the folders

  --dir DIR         where the folders and results live (default /tmp/contrast-data-bench)
  --images N        images in the large folder (default 200000)
  --small N         images in the small folder (default 10000)
  --size N          side images are decoded to (default 64)
  --batch N         batch size (default 128)
  --steps N         timed steps / batches (default 6)
  --rss-steps N     steps of each rss run (default 24)
`;

interface Opts {
  dir: string;
  images: number;
  small: number;
  size: number;
  batch: number;
  steps: number;
  rssSteps: number;
}

const folders = (o: Opts) => ({ large: join(o.dir, 'large'), small: join(o.dir, 'small') });
const resultsFile = (o: Opts) => join(o.dir, 'results.json');

function readResults(o: Opts): Record<string, unknown> {
  return existsSync(resultsFile(o))
    ? (JSON.parse(readFileSync(resultsFile(o), 'utf8')) as Record<string, unknown>)
    : {};
}

function record(o: Opts, key: string, value: unknown): void {
  mkdirSync(o.dir, { recursive: true });
  writeFileSync(
    resultsFile(o),
    `${JSON.stringify({ ...readResults(o), [key]: value }, null, 2)}\n`,
  );
  process.stderr.write(`${key}: ${JSON.stringify(value)}\n`);
}

/** Runs one measurement in a fresh process (its own peak RSS) and returns its JSON line. */
function child(spec: DataSpec): Record<string, number> {
  const script = fileURLToPath(new URL('./data-child.js', import.meta.url));
  return runJsonChild(process.execPath, [script, JSON.stringify(spec)], spec.mode);
}

async function generate(o: Opts): Promise<void> {
  const need = (o.images + o.small) * 8 * 1024; // ~3 KB a file, in 4 KB blocks, with room to spare
  mkdirSync(o.dir, { recursive: true });
  const fs = statfsSync(o.dir);
  const free = fs.bavail * fs.bsize;
  if (free < need) {
    throw new Error(
      `${o.dir} has ${(free / 2 ** 30).toFixed(1)} GiB free; the folders need about ${(need / 2 ** 30).toFixed(1)} GiB`,
    );
  }
  for (const [name, count] of [
    ['small', o.small],
    ['large', o.images],
  ] as const) {
    const dir = folders(o)[name];
    rmSync(dir, { recursive: true, force: true });
    const t0 = performance.now();
    await writeSyntheticFolder(dir, { count, size: 96, perFolder: 1000, distinct: 2000 });
    const seconds = (performance.now() - t0) / 1000;
    const bytes = readdirSync(dir).length;
    record(o, `generate.${name}`, {
      images: count,
      folders: bytes,
      seconds,
      freeGiBBefore: free / 2 ** 30,
    });
  }
}

/** Removes a folder's index cache, wherever it was written. */
function removeCaches(root: string): void {
  for (const file of indexCacheFiles(resolve(root))) rmSync(file, { force: true });
}

function startup(o: Opts): void {
  for (const [name, root] of Object.entries(folders(o))) {
    removeCaches(root);
    const base = { mode: 'startup' as const, root, size: o.size, batch: o.batch, steps: o.steps };
    record(o, `startup.${name}.built`, child(base));
    record(o, `startup.${name}.cached`, child(base));
  }
}

/** contrast train on a folder, in its own process; its summary. */
function trainRun(o: Opts, name: string, root: string): Record<string, unknown> {
  const runs = join(o.dir, 'runs', name);
  rmSync(runs, { recursive: true, force: true });
  const yaml = join(o.dir, `rss-${name}.yaml`);
  writeFileSync(
    yaml,
    `name: data-bench-${name}
data: { dataset: image-folder, root: ${root}, imageSize: ${o.size} }
model: { encoder: resnet18, stem: cifar, dim: 128 }
strategy: { name: momentum-queue, queueSize: 4096, momentum: 0.99 }
optim: { batchSize: ${o.batch}, epochs: 1, maxSteps: ${o.rssSteps}, lr: 0.06, weightDecay: 0.0005 }
tracking: { dir: ${runs}, logEvery: 4 }
`,
  );
  const bin = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
  const r = spawnSync(process.execPath, [bin, 'train', yaml], {
    encoding: 'utf8',
    env: { ...process.env, MLFLOW_TRACKING_URI: '' },
  });
  if (r.status !== 0)
    throw new Error(`contrast train on ${name} failed:\n${r.stderr.slice(-3000)}`);
  const run = join(runs, readdirSync(runs)[0]!);
  const summary = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const log = r.stderr
    .split('\n')
    .filter((l) => /indexed|img\/s/.test(l))
    .slice(-3);
  return {
    peak_rss_mb: summary.peak_rss_mb,
    img_per_sec: summary.img_per_sec,
    steps: summary.steps,
    wall_seconds: summary.wall_seconds,
    log,
  };
}

const f = (x: unknown, d = 1) => (typeof x === 'number' ? x.toFixed(d) : '-');

function report(o: Opts): string {
  const r = readResults(o) as Record<string, Record<string, number>>;
  const lines = [
    `| measure | ${o.small} images | ${o.images} images |`,
    '|---|---:|---:|',
    `| start-up, index built (s) | ${f(r['startup.small.built']?.seconds, 2)} | ${f(r['startup.large.built']?.seconds, 2)} |`,
    `| of which listing + stat (s) | ${f(r['startup.small.built']?.indexSeconds, 2)} | ${f(r['startup.large.built']?.indexSeconds, 2)} |`,
    `| start-up, index cached (s) | ${f(r['startup.small.cached']?.seconds, 2)} | ${f(r['startup.large.cached']?.seconds, 2)} |`,
    `| peak RSS of contrast train, ${o.rssSteps} steps (MB) | ${f(r['rss.small']?.peak_rss_mb, 0)} | ${f(r['rss.large']?.peak_rss_mb, 0)} |`,
    `| training img/s of that run | ${f(r['rss.small']?.img_per_sec)} | ${f(r['rss.large']?.img_per_sec)} |`,
  ];
  const d = r.decode;
  const t = r.train;
  if (d)
    lines.push(
      '',
      `Decode pipeline (${o.images} folder, ${o.size}x${o.size}): libvips alone ${f(d.decodeImgPerSec, 0)} img/s, stream with two augmented views ${f(d.pipelineImgPerSec, 0)} img/s.`,
    );
  if (t)
    lines.push(
      '',
      `ResNet-18 MoCo ${o.size}x${o.size} b${o.batch}: step alone ${f(t.stepAloneImgPerSec, 2)} img/s, with streaming decode ${f(t.streamingImgPerSec, 2)} img/s (${f(100 * (t.ratio ?? Number.NaN))}%).`,
    );
  return lines.join('\n');
}

/** `pnpm bench --data [stage...]`. */
export async function dataMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      dir: { type: 'string', default: '/tmp/contrast-data-bench' },
      images: { type: 'string', default: '200000' },
      small: { type: 'string', default: '10000' },
      size: { type: 'string', default: '64' },
      batch: { type: 'string', default: '128' },
      steps: { type: 'string', default: '6' },
      'rss-steps': { type: 'string', default: '24' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(DATA_HELP);
    return 0;
  }
  const o: Opts = {
    dir: resolve(values.dir),
    images: Number(values.images),
    small: Number(values.small),
    size: Number(values.size),
    batch: Number(values.batch),
    steps: Number(values.steps),
    rssSteps: Number(values['rss-steps']),
  };
  const stages = positionals.length
    ? positionals
    : ['generate', 'startup', 'decode', 'train', 'rss', 'report', 'clean'];
  const { large, small } = folders(o);
  const spec = (mode: DataSpec['mode']) => ({
    mode,
    root: large,
    size: o.size,
    batch: o.batch,
    steps: o.steps,
  });
  for (const stage of stages) {
    if (stage === 'generate') await generate(o);
    else if (stage === 'startup') startup(o);
    else if (stage === 'decode') record(o, 'decode', child(spec('decode')));
    else if (stage === 'train') record(o, 'train', child(spec('train')));
    else if (stage === 'rss') {
      record(o, 'rss.small', trainRun(o, 'small', small));
      record(o, 'rss.large', trainRun(o, 'large', large));
    } else if (stage === 'report') {
      const md = report(o);
      const out = join('runs', 'bench');
      mkdirSync(out, { recursive: true });
      const base = join(out, `data-${new Date().toISOString().replace(/[:.]/g, '-')}`);
      writeFileSync(`${base}.md`, `${md}\n`);
      writeFileSync(`${base}.json`, `${JSON.stringify(readResults(o), null, 2)}\n`);
      process.stdout.write(`${md}\n\nwritten: ${base}.md, ${base}.json\n`);
    } else if (stage === 'clean') rmSync(o.dir, { recursive: true, force: true });
    else throw new Error(`unknown stage '${stage}'\n\n${DATA_HELP}`);
  }
  return 0;
}
