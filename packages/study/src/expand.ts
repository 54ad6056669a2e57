import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import {
  applySettings,
  ConfigError,
  parseExperiment,
  parseWith,
  readExperimentFile,
  UsageError,
  type ExperimentConfig,
} from '@contrast/core';
import { isCategorical, StudySchema, type Study, type StudyEvaluate } from './schema.js';

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
  /** A run of a categorical study: its series is its category, it has no x. */
  categorical?: boolean;
  /** The linear probe to run after training (the study's `evaluate.linear`); absent: none. */
  linear?: Omit<StudyEvaluate, 'linear'>;
}

/** A run as the logs name it: its series, its x (none in a categorical study) and seed. */
export function runTag(run: Pick<StudyRun, 'series' | 'xLabel' | 'k' | 'seed' | 'categorical'>) {
  const x = run.categorical ? '' : ` ${run.xLabel ?? `K=${run.k}`}`;
  return `${run.series}${x}${run.seed ? ` seed ${run.seed}` : ''}`;
}

interface Point {
  k: number;
  label?: string;
  set: Record<string, unknown>;
}

/** The single point of each series of a categorical study (no x: the series is the category). */
const CATEGORY_POINT: Point = { k: 1, set: {} };

/**
 * Grid / zip axes as series of points: fields other than the axis make the
 * series. Series of a categorical study get one point each.
 */
export function axesToSeries(
  study: Study,
): { label: string; base?: string; set: Record<string, unknown>; points: Point[] }[] {
  if (study.series)
    return study.series.map((s) => ({ ...s, points: s.points ?? [CATEGORY_POINT] }));
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

/** Every base experiment of a study (its own and its series'), as absolute paths, in order. */
export function studyBases(study: Study, file: string): string[] {
  const paths = [study.base, ...(study.series ?? []).map((s) => s.base)];
  return [...new Set(paths.filter((p): p is string => !!p).map((p) => resolve(dirname(file), p)))];
}

/**
 * A series' base experiment (its own `base`, else the study's), read once per path.
 * @throws ConfigError naming the series when the file cannot be read or parsed.
 */
function baseReader(study: Study, file: string) {
  const cache = new Map<string, Record<string, unknown>>();
  return (series: { label: string; base?: string }) => {
    const path = resolve(dirname(file), (series.base ?? study.base)!);
    let doc = cache.get(path);
    if (!doc) {
      try {
        doc = readExperimentFile(path);
      } catch (e) {
        const where = series.base ? `series '${series.label}' base` : 'base';
        throw new ConfigError(where, (e as Error).message.split('\n')[0] ?? String(e), {
          hint: `${where}: the path of an experiment YAML, relative to the study file (${dirname(file)})`,
          cause: e,
        });
      }
      cache.set(path, doc);
    }
    return doc;
  };
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
 * A study's default output folder: runs/studies/<name>, or
 * runs/studies/<name>-x<scale> for a `--scale` run, so the longer version's
 * report never overwrites (or mixes its results with) the study's own.
 */
export function defaultStudyDir(name: string, scale: number): string {
  return join('runs', 'studies', scale === 1 ? name : `${name}-x${scale}`);
}

/**
 * Checks `--seeds` against the study's `seeds`.
 * @throws UsageError naming the seeds the study lacks and the ones it has.
 */
export function checkSeeds(
  study: Pick<Study, 'seeds'>,
  seeds: readonly number[] | undefined,
): void {
  const missing = (seeds ?? []).filter((s) => !study.seeds.includes(s));
  if (missing.length > 0) {
    throw new UsageError(
      `--seeds ${missing.join(',')}: not among the study's seeds (${study.seeds.join(', ')})`,
      { hint: `pick from ${study.seeds.join(', ')}, or add the seed to the study's \`seeds\`` },
    );
  }
}

/**
 * Settings ordered shallow paths first (stable otherwise): a series that sets a
 * whole section (`optim: { ... }`) gets it before the study's dotted fields of that
 * section (`optim.epochs`) are applied, so a row never drops the study's budget.
 */
function sectionsFirst(settings: Record<string, unknown>): Record<string, unknown> {
  const depth = (key: string) => key.split('.').length;
  return Object.fromEntries(Object.entries(settings).sort(([a], [b]) => depth(a) - depth(b)));
}

/**
 * Base experiment (the series' own, else the study's) <- study settings <- series
 * settings <- point settings, then `scale` multiplies the epochs and the training
 * subset (capped at the full split). A categorical study's runs are named
 * `<study>-<series>[-s<seed>]`. The study's `evaluate.linear` rides on each run.
 * `seeds` keeps only the runs of those of the study's seeds (each run keeps the
 * name and id it has in the whole study, so a later run of all seeds skips them).
 * @throws ConfigError naming the series when a base cannot be read or a
 *   configuration does not parse; UsageError for a `seeds` entry the study lacks.
 */
export function expandStudy(
  study: Study,
  file: string,
  options: { scale?: number; runsDir: string; seeds?: readonly number[] },
): StudyRun[] {
  const baseOf = baseReader(study, file);
  const scale = options.scale ?? 1;
  if (!(scale > 0)) throw new ConfigError('--scale', `must be > 0, got ${scale}`);
  checkSeeds(study, options.seeds);
  const seeds = options.seeds ? study.seeds.filter((s) => options.seeds!.includes(s)) : study.seeds;
  const categorical = isCategorical(study);
  const { linear, ...probe } = study.evaluate;
  const runs: StudyRun[] = [];
  for (const series of axesToSeries(study)) {
    const base = baseOf(series);
    for (const point of series.points) {
      for (const seed of seeds) {
        const settings = sectionsFirst({ ...study.set, ...series.set, ...point.set });
        if (study.seeds.length > 1 || study.seeds[0] !== 0) settings.seed = seed;
        const raw = applySettings(base, settings);
        let config: ExperimentConfig;
        try {
          config = parseExperiment(raw);
        } catch (e) {
          throw new ConfigError(
            categorical ? `series '${series.label}'` : `series '${series.label}', k = ${point.k}`,
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
          name: categorical
            ? `${study.name}-${series.label}${seedTag}`.replace(/[^\w.-]/g, '_')
            : runName(xTag(study, point)),
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
          id: configHash(categorical ? config : { ...config, name: legacyName }),
          series: series.label,
          k: point.k,
          ...(point.label !== undefined ? { xLabel: point.label } : {}),
          seed: config.seed,
          config,
          ...(categorical ? { categorical } : {}),
          ...(linear ? { linear: probe } : {}),
        });
      }
    }
  }
  return runs;
}
