import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { KnnMeasurement, TrainResult } from '@contrast/trainer';

const pct = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? '   n/a' : `${(100 * x).toFixed(2).padStart(6)}%`;

/**
 * What a kNN number was measured on, in words: "kNN top-1 (k = 200, t = 0.1,
 * pooled backbone features) on fashion-mnist: the full test split (10000
 * images), bank = the full training split (60000)"; a subset says so ("first
 * 500 of 10000 test images", "bank = first 2048 training images
 * (data.trainSubset = 2048)").
 */
export function describeKnn(p: KnnMeasurement): string {
  const test =
    p.testSize >= p.testOf
      ? `the full test split (${p.testOf} images)`
      : `first ${p.testSize} of ${p.testOf} test images`;
  const bank =
    p.trainSubset > 0
      ? `first ${p.bankSize} training images (data.trainSubset = ${p.trainSubset})`
      : p.bankSize >= p.bankOf
        ? `the full training split (${p.bankOf})`
        : `first ${p.bankSize} of ${p.bankOf} training images`;
  return `kNN top-1 (k = ${p.k}, t = ${p.t}, ${p.features} features) on ${p.dataset}: ${test}, bank = ${bank}`;
}

/** The human summary of a training run (train's stdout). */
export function formatResult(r: TrainResult, runPath: string): string {
  const rows = [
    `${r.knnProtocol ? describeKnn(r.knnProtocol) : 'kNN top-1'}:`,
    `  raw pixels           ${pct(r.knn.rawPixels)}`,
    `  random-init encoder  ${pct(r.knn.randomInit)}`,
    `  trained encoder      ${pct(r.knn.trained)}   (${r.status}, ${r.steps} steps, ${r.epochs} epochs)`,
    `training ${Number.isFinite(r.imgPerSec) ? r.imgPerSec.toFixed(1) : 'n/a'} img/s, wall ${(r.wallSeconds / 60).toFixed(1)} min, peak RSS ${r.peakRssMb.toFixed(0)} MB`,
    `run stored in ${runPath}`,
  ];
  return rows.join('\n');
}

/** A training result as JSON (without the per-step tensor counts). */
export function resultData(r: TrainResult): Record<string, unknown> {
  const { tensorsAfterStep: _t, ...rest } = r;
  return rest;
}

/** A command line a user can paste into a POSIX shell: words with special characters are quoted. */
/**
 * How this shell runs the command, for the lines Contrast prints for the user
 * to paste (the resume command): `pnpm contrast` when started through the
 * workspace script, `contrast` when that is on PATH (a global or linked
 * install), else node with this file's path.
 */
export function invocation(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.npm_lifecycle_event === 'contrast') return ['pnpm', 'contrast'];
  const onPath = (env.PATH ?? '')
    .split(delimiter)
    .some((d) => d !== '' && existsSync(join(d, 'contrast')));
  return onPath ? ['contrast'] : ['node', process.argv[1] ?? 'contrast'];
}

export function shellLine(words: readonly string[]): string {
  return words
    .map((w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`))
    .join(' ');
}
