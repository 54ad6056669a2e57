import {
  knnProtocol,
  LINEAR_PROBE_DEFAULTS,
  PROBE_LR_SWEEP,
  type KnnProtocol,
} from '@contrast/eval';
import { groups, runConfig, runFolder, type StudyResult } from './results.js';

/** How a study's figures and table are titled and scaled (from its study.yaml). */
export interface ReportMeta {
  /** Figure and table title. */
  title: string;
  /** x axis title as the study names it (e.g. 'momentum m'). */
  x?: string;
  /** 'log', 'linear', or 'point' (tested values evenly spaced). Default 'log'. */
  xScale?: 'log' | 'linear' | 'point';
  /** The swept field of an axes study (e.g. 'strategy.momentum'). */
  axis?: string;
  /** Legend title of a series-form study (default 'series'). */
  legend?: string;
  /** One configuration per series (series without points): a table and figure by series. */
  categorical?: boolean;
}

/** The x axis title earlier versions stored for every study, whatever its axis. */
const OLD_DEFAULT_X = 'K (negatives per query)';

/**
 * The report's settings from a study (or the study.yaml stored in its folder,
 * possibly written by an earlier version). An axes study whose `x` is the old
 * default is titled by its axis field instead.
 */
export function reportMeta(saved: object, fallbackTitle: string): ReportMeta {
  const study = saved as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const axis = str(study.axis);
  const x = str(study.x);
  const xScale = ['log', 'linear', 'point'].includes(study.xScale as string)
    ? (study.xScale as ReportMeta['xScale'])
    : undefined;
  return {
    title: str(study.description) ?? str(study.name) ?? fallbackTitle,
    ...(x && !(axis && x === OLD_DEFAULT_X) ? { x } : {}),
    ...(xScale ? { xScale } : {}),
    ...(axis ? { axis } : {}),
    ...(str(study.legend) ? { legend: str(study.legend)! } : {}),
    ...(Array.isArray(study.series) &&
    study.series.length > 0 &&
    study.series.every((s) => !(s as { points?: unknown }).points)
      ? { categorical: true }
      : {}),
  };
}

/** The x axis title: the study's name for it and the swept field, e.g. 'momentum m (strategy.momentum)'. */
export function xTitle(meta: ReportMeta): string {
  if (meta.axis && meta.x && meta.x !== meta.axis) return `${meta.x} (${meta.axis})`;
  return meta.axis ?? meta.x ?? OLD_DEFAULT_X;
}

/**
 * File name stem of the study figure: after the swept field; `knn-vs-k` for
 * series (x = K); `accuracy-by-<legend>` for a categorical study (`accuracy-by-method`).
 */
export function figureStem(meta: ReportMeta): string {
  if (meta.categorical) return `accuracy-by-${(meta.legend ?? 'series').replace(/[^\w.-]/g, '_')}`;
  return meta.axis ? `knn-vs-${meta.axis.replace(/[^\w.-]/g, '_')}` : 'knn-vs-k';
}

/** A value as written in a study (JSON) as a short label: strings unquoted. */
function shortValue(json: string): string {
  try {
    const v: unknown = JSON.parse(json);
    return typeof v === 'string' ? v : json;
  } catch {
    return json;
  }
}

/**
 * The legend of a study's series. Axes studies label a series `field=value, ...`;
 * the legend then names the fields once (title 'loss.temperature') and labels each
 * series by its values ('0.1'). Series-form labels stay whole under `meta.legend`.
 */
export function seriesLegend(
  results: readonly StudyResult[],
  meta: ReportMeta,
): { title: string; label: (series: string) => string; names: string[] } {
  const { series } = groups(results);
  const split = (s: string) => s.split(/, (?=[\w.]+=)/).map((part) => /^([\w.]+)=(.*)$/.exec(part));
  const parsed = series.map(split);
  const fields = parsed[0]?.map((m) => m?.[1]).join(', ');
  const structured =
    parsed.length > 0 &&
    parsed.every((ms) => ms.every((m) => m) && ms.map((m) => m![1]).join(', ') === fields);
  if (!structured || !fields) {
    return { title: meta.legend ?? 'series', label: (s) => s, names: series };
  }
  const label = (s: string) =>
    split(s)
      .map((m) => shortValue(m![2]!))
      .join(', ');
  return { title: fields, label, names: series.map(label) };
}

/** The tested x values: positions, their labels as written, and whether they are numbers. */
export function testedX(results: readonly StudyResult[]): {
  ks: number[];
  label: (k: number) => string;
  numeric: boolean;
} {
  const { ks } = groups(results);
  const written = (k: number) => results.find((r) => r.k === k)?.xLabel;
  const numeric = ks.every((k) => {
    const w = written(k);
    if (w === undefined) return true;
    try {
      return JSON.parse(w) === k;
    } catch {
      return false;
    }
  });
  const label = (k: number) => {
    const w = written(k);
    return w === undefined ? String(k) : shortValue(w);
  };
  return { ks, label, numeric };
}

/** The kNN protocol of each run with a readable config.yaml. */
export function studyProtocols(outDir: string, results: readonly StudyResult[]): KnnProtocol[] {
  return results
    .map((r) => runConfig(runFolder(outDir, r)))
    .filter((c) => c !== undefined)
    .map((c) => knnProtocol(c));
}

/**
 * The evaluation protocol in words, one fact per clause: values that differ
 * between runs are listed ('k = 10 / 200'). Undefined when no run recorded a config.
 */
export function protocolText(
  protocols: readonly KnnProtocol[],
): { knn: string; data: string } | undefined {
  if (protocols.length === 0) return undefined;
  const distinct = (f: (p: KnnProtocol) => string | number) =>
    [...new Set(protocols.map(f))].join(' / ');
  return {
    knn: `at the final epoch: k = ${distinct((p) => p.k)}, t = ${distinct((p) => p.t)}, ${distinct((p) => p.features)}`,
    data: `${distinct((p) => p.dataset)}; bank: ${distinct((p) => p.bank)}; test: ${distinct((p) => p.test)}`,
  };
}

/** 'mean ± std over 2 seeds' when a point has several seeds, else undefined. */
export function seedsText(results: readonly StudyResult[]): string | undefined {
  const { series, ks, at } = groups(results);
  const most = Math.max(0, ...series.flatMap((s) => ks.map((k) => at(s, k).length)));
  return most > 1 ? `mean ± std over ${most} seeds` : undefined;
}

/** 20000 -> '20k', 1500 -> '1,500': the short count a title carries. */
function shortCount(n: number): string {
  return n % 1000 === 0 ? `${n / 1000}k` : n.toLocaleString('en-US');
}

/**
 * What the runs trained on, as run (after `--scale`): '60k images, 6 epochs'
 * ('full training split' for `data.trainSubset: 0`); values that differ between
 * runs are listed ('2 / 4 epochs'). Images from the runs' config.yaml, epochs
 * from the results. Undefined when no run recorded a config.
 */
export function budgetText(outDir: string, results: readonly StudyResult[]): string | undefined {
  const subsets = results
    .map((r) => runConfig(runFolder(outDir, r))?.data.trainSubset)
    .filter((n): n is number => n !== undefined);
  if (subsets.length === 0) return undefined;
  const distinct = <T>(xs: T[]) => [...new Set(xs)];
  const images = distinct(subsets.map((n) => (n > 0 ? shortCount(n) : 'full training split')));
  const epochs = distinct(results.map((r) => r.epochs));
  const imagesText = images.every((i) => i !== 'full training split')
    ? `${images.join(' / ')} images`
    : images.join(' / ');
  return `${imagesText}, ${epochs.join(' / ')} epoch${epochs.length === 1 && epochs[0] === 1 ? '' : 's'}`;
}

/**
 * A study's title with its training budget as run: a description that states one
 * ('..., 20k images, 2 epochs') has it replaced (a `--scale` run trained on more),
 * any other gets it after a colon.
 */
export function titleWithBudget(title: string, budget: string | undefined): string {
  if (!budget) return title;
  const stated = /(?:\d[\d,.]*k? images|full training split), \d+ epochs?/;
  return stated.test(title) ? title.replace(stated, budget) : `${title}: ${budget}`;
}

/**
 * The linear probe's protocol in words, from the results' recorded settings
 * (values that differ between runs are listed). Undefined when no run was probed.
 */
export function probeText(results: readonly StudyResult[]): string | undefined {
  const probed = results.filter((r) => r.linear !== undefined);
  if (probed.length === 0) return undefined;
  const distinct = <T>(f: (r: StudyResult) => T) => [...new Set(probed.map(f))].join(' / ');
  const selected = probed.some((r) => r.linearLrSelected);
  const lr = selected
    ? `lr selected from ${PROBE_LR_SWEEP.lrs.join(', ')} on ${100 * PROBE_LR_SWEEP.heldOut}% of the training images held out (chosen: ${distinct((r) => r.linearLr)})`
    : `lr ${distinct((r) => r.linearLr)} (fixed)`;
  const images = distinct((r) =>
    r.linearTrainSize !== undefined ? r.linearTrainSize.toLocaleString('en-US') : '?',
  );
  return (
    `linear probe on frozen pooled backbone features (BN in eval mode, no augmentation), ` +
    `fitted on ${images} training images, scored on the full test split: SGD momentum ${LINEAR_PROBE_DEFAULTS.momentum}, ` +
    `wd ${LINEAR_PROBE_DEFAULTS.weightDecay}, batch ${LINEAR_PROBE_DEFAULTS.batchSize}, ${distinct((r) => r.linearEpochs)} epochs, ` +
    `lr x0.1 at ${LINEAR_PROBE_DEFAULTS.milestones.map((m) => `${100 * m}%`).join(' and ')} of them, ${lr}`
  );
}
