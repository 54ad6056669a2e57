import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseExperiment, type ExperimentConfig } from '@contrast/core';
import { parse as parseYaml } from 'yaml';

/** One finished run of a study, as stored in results.jsonl. */
export interface StudyResult {
  id: string;
  series: string;
  k: number;
  /** The x value as written (axes form). */
  xLabel?: string;
  seed?: number;
  knn: number;
  alignment?: number;
  uniformity?: number;
  knnRandomInit?: number;
  knnRawPixels?: number;
  finalLoss: number;
  imgPerSec: number;
  wallSeconds: number;
  steps: number;
  epochs: number;
  runPath: string;
}

/** The records of a study folder's results.jsonl (none when there is no file). */
export function readResults(outDir: string): StudyResult[] {
  const file = join(outDir, 'results.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as StudyResult);
}

/** Mean and (sample, n - 1) standard deviation; std is 0 for a single value. */
export function meanStd(xs: readonly number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std =
    xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
}

/** Series in study order, x positions ascending, and the results (seeds) at one point. */
export function groups(results: readonly StudyResult[]) {
  const series = [...new Set(results.map((r) => r.series))];
  const ks = [...new Set(results.map((r) => r.k))].sort((a, b) => a - b);
  const at = (s: string, k: number) => results.filter((r) => r.series === s && r.k === k);
  return { series, ks, at };
}

/**
 * A run's folder: its recorded path, or, when the study folder was moved, the
 * folder of the same name under `<study>/runs/`.
 */
export function runFolder(outDir: string, r: StudyResult): string {
  if (existsSync(r.runPath)) return r.runPath;
  const moved = join(outDir, 'runs', basename(r.runPath));
  return existsSync(moved) ? moved : r.runPath;
}

/**
 * The resolved config a run recorded (config.yaml in its folder), or undefined
 * when the folder is gone. A config.yaml from a version with another schema is
 * read for what the report needs (dataset, subset, encoder, kNN settings; the
 * rest at its defaults), so old study folders still report.
 */
export function runConfig(runPath: string): ExperimentConfig | undefined {
  const file = join(runPath, 'config.yaml');
  if (!existsSync(file)) return undefined;
  const raw = parseYaml(readFileSync(file, 'utf8')) as Record<string, unknown> | null;
  try {
    return parseExperiment(raw);
  } catch {
    const pick = (o: unknown, keys: string[]) =>
      Object.fromEntries(
        keys
          .filter((k) => o && typeof o === 'object' && k in o)
          .map((k) => [k, (o as Record<string, unknown>)[k]]),
      );
    const section = (name: string) => (raw?.[name] ?? {}) as Record<string, unknown>;
    try {
      return parseExperiment({
        name: 'recorded',
        strategy: { name: 'recorded' },
        data: pick(section('data'), ['dataset', 'trainSubset']),
        model: pick(section('model'), ['encoder']),
        eval: { knn: pick(section('eval').knn, ['k', 't', 'bankSize', 'testSize']) },
      });
    } catch {
      return undefined;
    }
  }
}
