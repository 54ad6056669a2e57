import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import {
  applySettings,
  ConfigError,
  parseExperiment,
  parseWith,
  readExperimentFile,
  type ExperimentConfig,
} from '@contrast/core';
import { StudySchema, type Study } from './schema.js';

export interface StudyRun {
  /** Short hash of the resolved config: the run's identity (finished runs are skipped). */
  id: string;
  series: string;
  /** Position on the x axis. */
  k: number;
  /** The x value as written (axes form), for table headers. */
  xLabel?: string;
  seed: number;
  config: ExperimentConfig;
}

interface Point {
  k: number;
  label?: string;
  set: Record<string, unknown>;
}

/** Grid / zip axes as series of points: fields other than the axis make the series. */
export function axesToSeries(
  study: Study,
): { label: string; set: Record<string, unknown>; points: Point[] }[] {
  if (study.series) return study.series;
  const axis = study.axis!;
  const grid = study.grid ?? {};
  const zip = study.zip ?? {};
  const asK = (v: unknown, i: number) =>
    typeof v === 'number' ? v : typeof v === 'boolean' ? Number(v) : i;
  const points: Point[] =
    axis in zip
      ? zip[axis]!.map((v, i) => ({
          k: asK(v, i),
          label: JSON.stringify(v),
          set: Object.fromEntries(Object.entries(zip).map(([f, vs]) => [f, vs[i]])),
        }))
      : grid[axis]!.map((v, i) => ({ k: asK(v, i), label: JSON.stringify(v), set: { [axis]: v } }));
  if (!(axis in zip) && Object.keys(zip).length > 0) {
    throw new ConfigError('zip', 'with the axis in grid, zip lists would have no row to follow', {
      hint: 'put the axis field in zip, or move the zipped fields into grid',
    });
  }
  let combos: Record<string, unknown>[] = [{}];
  for (const [field, values] of Object.entries(grid)) {
    if (field === axis) continue;
    combos = combos.flatMap((c) => values.map((v) => ({ ...c, [field]: v })));
  }
  return combos.map((c) => ({
    label: Object.keys(c).length
      ? Object.entries(c)
          .map(([f, v]) => `${f}=${JSON.stringify(v)}`)
          .join(', ')
      : study.name,
    set: c,
    points,
  }));
}

export function loadStudy(file: string): Study {
  return parseWith(StudySchema, readExperimentFile(file));
}

export function configHash(config: ExperimentConfig): string {
  // where a run is stored, tracked and checkpointed does not change what it computes
  const { tracking: _tracking, checkpoint: _checkpoint, ...rest } = config;
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0, 12);
}

/**
 * A point's part of a child run's name, after the swept field: `strategy.momentum=0.99`
 * for an axes study (strings unquoted), `k256` for a series study (x is K).
 */
export function xTag(study: Pick<Study, 'axis'>, point: Point): string {
  if (!study.axis) return `k${point.k}`;
  let value = point.label ?? String(point.k);
  try {
    const v: unknown = JSON.parse(value);
    if (typeof v === 'string') value = v;
  } catch {
    // written as is
  }
  return `${study.axis}=${value}`;
}

/**
 * Base experiment <- study settings <- series settings <- point settings, then
 * `scale` multiplies the epochs and the training subset (capped at the full split).
 */
export function expandStudy(
  study: Study,
  file: string,
  options: { scale?: number; runsDir: string },
): StudyRun[] {
  const base = readExperimentFile(resolve(dirname(file), study.base));
  const scale = options.scale ?? 1;
  if (!(scale > 0)) throw new ConfigError('--scale', `must be > 0, got ${scale}`);
  const runs: StudyRun[] = [];
  for (const series of axesToSeries(study)) {
    for (const point of series.points as Point[]) {
      for (const seed of study.seeds) {
        const settings = { ...study.set, ...series.set, ...point.set };
        if (study.seeds.length > 1 || study.seeds[0] !== 0) settings.seed = seed;
        const raw = applySettings(base, settings);
        let config: ExperimentConfig;
        try {
          config = parseExperiment(raw);
        } catch (e) {
          throw new ConfigError(
            `series '${series.label}', k = ${point.k}`,
            (e as Error).message.split('\n')[0] ?? String(e),
            {
              hint:
                (e as { hint?: string }).hint ??
                'fix the study file (settings are dotted paths of the experiment schema)',
              cause: e,
            },
          );
        }
        const seedTag = study.seeds.length > 1 ? `-s${seed}` : '';
        const runName = (x: string) =>
          `${study.name}-${series.label}-${x}${seedTag}`.replace(/[^\w.-]/g, '_');
        // ids hash the config under the name earlier versions gave (k<x> for any x),
        // so the finished runs of an existing study folder are still found
        const legacyName = runName(`k${point.k}`);
        config = {
          ...config,
          name: runName(xTag(study, point)),
          optim: { ...config.optim, epochs: Math.max(1, Math.round(config.optim.epochs * scale)) },
          data: {
            ...config.data,
            trainSubset:
              config.data.trainSubset > 0 && config.data.trainSubset * scale < 60000
                ? Math.round(config.data.trainSubset * scale)
                : 0,
          },
          tracking: { ...config.tracking, dir: options.runsDir },
        };
        runs.push({
          id: configHash({ ...config, name: legacyName }),
          series: series.label,
          k: point.k,
          ...(point.label !== undefined ? { xLabel: point.label } : {}),
          seed: config.seed,
          config,
        });
      }
    }
  }
  return runs;
}
