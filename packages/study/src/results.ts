import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseExperiment, writeFileAtomic, type ExperimentConfig } from '@contrast/core';
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
  /** Linear probe top-1 on the test split (fraction), when the study ran the probe. */
  linear?: number;
  linearTop5?: number;
  /** The probe's lr (selected or fixed), epochs and training images. */
  linearLr?: number;
  linearEpochs?: number;
  linearTrainSize?: number;
  /** The lr was selected on held-out training images (else fixed by the study). */
  linearLrSelected?: boolean;
  /** Fitted on fewer images than the training split (`evaluate.trainSize`). */
  linearSubset?: boolean;
  /** Wall time of the probe (feature extraction and fitting), not in `wallSeconds`. */
  linearSeconds?: number;
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

/**
 * Records a finished run in results.jsonl: appended, or replacing the line of the
 * same id (a run whose probe was added later), the file then rewritten whole.
 */
export function recordResult(outDir: string, record: StudyResult): void {
  const file = join(outDir, 'results.jsonl');
  const old = readResults(outDir);
  if (!old.some((r) => r.id === record.id)) {
    appendFileSync(file, `${JSON.stringify(record)}\n`);
    return;
  }
  const lines = old.map((r) => JSON.stringify(r.id === record.id ? record : r));
  writeFileAtomic(file, `${lines.join('\n')}\n`);
}

/** A study's linear probe settings (`evaluate` without its switch). */
export interface ProbeSettings {
  epochs: number;
  lr?: number;
  /** 0: the whole training split. */
  trainSize: number;
}

/**
 * Whether a result's linear probe was made with these settings: the same
 * epochs, the same lr choice (selected, or the same fixed lr) and the same
 * training images (a `trainSize` at or above the split's size is the whole split).
 */
export function probeMatches(r: Partial<StudyResult> | undefined, probe: ProbeSettings): boolean {
  if (r?.linear === undefined || r.linearEpochs !== probe.epochs) return false;
  const lr =
    probe.lr === undefined ? !!r.linearLrSelected : !r.linearLrSelected && r.linearLr === probe.lr;
  const size = r.linearTrainSize ?? -1;
  const images =
    probe.trainSize === 0
      ? !r.linearSubset
      : r.linearSubset
        ? size === probe.trainSize
        : size <= probe.trainSize;
  return lr && images;
}

/**
 * Whether a configuration is finished for the study: recorded in results.jsonl
 * and, when the study runs the linear probe, probed with its settings. A run
 * recorded without that probe is not done: its training stands (the run
 * folder's result is reused) and only the probe runs.
 */
export function isDone(
  recorded: ReadonlyMap<string, StudyResult>,
  run: { id: string; linear?: ProbeSettings },
): boolean {
  const r = recorded.get(run.id);
  return !!r && (!run.linear || probeMatches(r, run.linear));
}

/** The study's results by id, for {@link isDone}. */
export const resultsById = (outDir: string) => new Map(readResults(outDir).map((r) => [r.id, r]));

/** Mean and (sample, n - 1) standard deviation; std is 0 for a single value. */
export function meanStd(xs: readonly number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std =
    xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
}

/** Series in study order, x positions ascending, and the results (seeds) at one point. */
/**
 * The results in the study file's series order (a stable sort by the label's
 * place in `labels`; series it does not list keep their order, after the listed
 * ones), so tables and figures follow the file, not the order runs finished in.
 */
export function inSeriesOrder(
  results: readonly StudyResult[],
  labels: readonly string[],
): StudyResult[] {
  const place = (s: string) => {
    const i = labels.indexOf(s);
    return i < 0 ? labels.length : i;
  };
  return [...results].sort((a, b) => place(a.series) - place(b.series));
}

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
