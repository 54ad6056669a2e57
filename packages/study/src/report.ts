import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '@contrast/core';
import { parse as parseYaml } from 'yaml';
import {
  categorySpec,
  curvesSpec,
  lineLegends,
  type LossPanel,
  type Reference,
  studyPlotSpec,
  type CategoryPoint,
  type CurvePoint,
  type StudyPoint,
  type StyleKey,
  type XAxis,
} from './figures.js';
import {
  budgetText,
  figureStem,
  probeText,
  protocolText,
  reportMeta,
  seedsText,
  seriesLegend,
  studyProtocols,
  testedX,
  titleWithBudget,
  xTitle,
  type ReportMeta,
} from './labels.js';
import { renderFigure, type RenderedFigure } from './render.js';
import {
  groups,
  inSeriesOrder,
  meanStd,
  readResults,
  runConfig,
  runFolder,
  type StudyResult,
} from './results.js';

const pct = (x: number | undefined) =>
  x === undefined || Number.isNaN(x) ? '' : (100 * x).toFixed(2);

/** The values a metric has over runs, those that measured it (no undefined, no NaN). */
function measured(
  rs: readonly StudyResult[],
  value: (r: StudyResult) => number | undefined,
): number[] {
  return rs.map(value).filter((x): x is number => x !== undefined && !Number.isNaN(x));
}

function cellOf(
  rs: readonly StudyResult[],
  value: (r: StudyResult) => number | undefined,
  digits: number,
  scale = 1,
): string {
  const xs = measured(rs, value);
  if (xs.length === 0) return '-';
  const { mean, std } = meanStd(xs.map((x) => x * scale));
  return xs.length > 1 ? `${mean.toFixed(digits)} ± ${std.toFixed(digits)}` : mean.toFixed(digits);
}

/** The mean over seeds alone (reference values, throughput, time), '-' when none. */
function meanOf(
  rs: readonly StudyResult[],
  value: (r: StudyResult) => number | undefined,
  digits: number,
  scale = 1,
): string {
  const xs = measured(rs, value);
  return xs.length ? (meanStd(xs).mean * scale).toFixed(digits) : '-';
}

/** What the numbers of a study's table and figures are, in one sentence. */
function caption(results: readonly StudyResult[], protocol: ReturnType<typeof protocolText>) {
  const seeds = seedsText(results);
  const what = protocol
    ? `${protocol.knn}; ${protocol.data}`
    : "at the final epoch (the runs' config.yaml not found: protocol unknown)";
  return `${what}${seeds ? `; ${seeds}` : ''}`;
}

/**
 * Series x value table in markdown: kNN top-1 (%), mean ± std over seeds, under
 * a caption with the evaluation protocol (`protocolText`). Rows are labelled by
 * their values under the series field's name; columns by the tested x values.
 */
export function markdownTable(
  results: readonly StudyResult[],
  meta: ReportMeta,
  protocol?: ReturnType<typeof protocolText>,
): string {
  const { series, ks, at } = groups(results);
  const legend = seriesLegend(results, meta);
  const x = testedX(results);
  const column = (k: number) => (meta.axis ? x.label(k) : `K = ${k}`);
  const header = (first: string) => [
    `| ${first} | ${ks.map(column).join(' | ')} |`,
    `|---|${ks.map(() => '---:').join('|')}|`,
  ];
  const lines = [
    `## ${meta.title}`,
    '',
    `kNN top-1 accuracy (%) ${caption(results, protocol)}. Rows: ${legend.title}; columns: ${xTitle(meta)}.`,
    '',
    ...header(legend.title),
    ...series.map(
      (s) =>
        `| ${legend.label(s)} | ${ks.map((k) => cellOf(at(s, k), (r) => r.knn, 2, 100)).join(' | ')} |`,
    ),
  ];
  if (results.some((r) => r.linear !== undefined)) {
    lines.push(
      '',
      `Linear probe top-1 accuracy (%): ${probeText(results)}.`,
      '',
      ...header(legend.title),
      ...series.map(
        (s) =>
          `| ${legend.label(s)} | ${ks.map((k) => cellOf(at(s, k), (r) => r.linear, 2, 100)).join(' | ')} |`,
      ),
    );
  }
  if (results.some((r) => r.alignment !== undefined)) {
    lines.push(
      '',
      'Alignment / uniformity (Wang & Isola 2020) of the final embeddings on test images (lower is better for both):',
      '',
      ...header(legend.title),
      ...series.map(
        (s) =>
          `| ${legend.label(s)} | ${ks
            .map(
              (k) =>
                `${cellOf(at(s, k), (r) => r.alignment, 3)} / ${cellOf(at(s, k), (r) => r.uniformity, 3)}`,
            )
            .join(' | ')} |`,
      ),
    );
  }
  const [init, pixels] = [
    baseline(results, (r) => r.knnRandomInit),
    baseline(results, (r) => r.knnRawPixels),
  ];
  if (init)
    lines.push(
      '',
      `Reference (same protocol): random-init encoder ${init.text}${pixels ? `, raw pixels ${pixels.text}` : ''}.`,
    );
  const wall = results.reduce((s, r) => s + r.wallSeconds, 0);
  lines.push(
    '',
    `${results.length} runs, ${(wall / 60).toFixed(1)} min of training and evaluation in total.`,
    '',
  );
  return lines.join('\n');
}

/**
 * The categorical study's table in markdown: one row per series (e.g. a
 * method), kNN and linear probe top-1 (%) as mean ± std over seeds, the
 * random-init encoder's kNN, training throughput and wall time per run (mean
 * over seeds), under the protocol of each number.
 */
export function categoryTable(
  results: readonly StudyResult[],
  meta: ReportMeta,
  protocol?: ReturnType<typeof protocolText>,
): string {
  const { series } = groups(results);
  const title = meta.legend ?? 'series';
  const probe = probeText(results);
  const seeds = seedsText(results);
  const row = (s: string) => {
    const rs = results.filter((r) => r.series === s);
    return [
      s,
      cellOf(rs, (r) => r.knn, 2, 100),
      cellOf(rs, (r) => r.linear, 2, 100),
      meanOf(rs, (r) => r.knnRandomInit, 2, 100),
      meanOf(rs, (r) => r.imgPerSec, 0),
      meanOf(rs, (r) => r.wallSeconds, 1, 1 / 60),
    ];
  };
  const wall = results.reduce((sum, r) => sum + r.wallSeconds + (r.linearSeconds ?? 0), 0);
  const pixels = baseline(results, (r) => r.knnRawPixels);
  return [
    `## ${meta.title}`,
    '',
    `| ${title} | kNN top-1 (%) | linear top-1 (%) | kNN at random init (%) | img/s | wall time (min) |`,
    '|---|---:|---:|---:|---:|---:|',
    ...series.map((s) => `| ${row(s).join(' | ')} |`),
    '',
    `- kNN: ${protocol ? `${protocol.knn}; ${protocol.data}` : "at the final epoch (the runs' config.yaml not found: protocol unknown)"}.`,
    `- Linear: ${probe ?? 'not run (the study has no `evaluate.linear`)'}.`,
    `- kNN at random init: the same protocol on the same encoder before training${pixels ? `; raw pixels ${pixels.text}` : ''}.`,
    '- img/s: training images per second (both views of an image count once); wall time: training and kNN evaluation of one run (the probe not included).',
    `- ${seeds ? `${seeds} (sample std)` : 'one seed per row'}; ${results.length} runs, ${(wall / 60).toFixed(1)} min in total with the probes.`,
    '',
  ].join('\n');
}

/** The categorical figure's dots: kNN and (when probed) linear top-1 per series, in %. */
export function categoryPoints(results: readonly StudyResult[]): CategoryPoint[] {
  const { series } = groups(results);
  const evaluations: [string, (r: StudyResult) => number | undefined][] = [
    ['kNN', (r) => r.knn],
    ['linear probe', (r) => r.linear],
  ];
  return series.flatMap((s) =>
    evaluations.flatMap(([metric, value]) => {
      const xs = measured(
        results.filter((r) => r.series === s),
        value,
      );
      if (xs.length === 0) return [];
      const { mean, std } = meanStd(xs.map((x) => 100 * x));
      return [{ series: s, metric, mean, lo: mean - std, hi: mean + std, n: xs.length }];
    }),
  );
}

/** The categorical study's figure: kNN and linear top-1 per series, mean ± std over seeds. */
export async function categoryFigure(
  results: readonly StudyResult[],
  meta: ReportMeta,
  subtitle: string[],
): Promise<RenderedFigure> {
  const points = categoryPoints(results);
  const metrics = [...new Set(points.map((p) => p.metric))];
  const initRef = references(results).filter((r) => r.text.startsWith('random-init'));
  return renderFigure(
    categorySpec(
      points,
      { title: meta.legend ?? 'series', order: groups(results).series },
      metrics,
      { text: meta.title, subtitle },
      initRef.map((r) => ({ ...r, text: `kNN, ${r.text}` })),
    ),
    meta.title,
    lineLegends,
  );
}

/**
 * results.csv: one row per run (every seed), RFC 4180 quoting where a value needs
 * it. The x position's column is named after the swept field (`xColumn`, e.g.
 * `strategy.momentum`; `k` for a series study, whose x is K).
 */
export function csv(results: readonly StudyResult[], xColumn = 'k'): string {
  const cols = [
    'series',
    'k',
    'xLabel',
    'seed',
    'knn',
    'alignment',
    'uniformity',
    'knnRandomInit',
    'knnRawPixels',
    'linear',
    'linearTop5',
    'linearLr',
    'linearEpochs',
    'linearTrainSize',
    'finalLoss',
    'imgPerSec',
    'wallSeconds',
    'steps',
    'epochs',
    'id',
    'runPath',
  ] as const;
  const esc = (v: unknown) =>
    v === undefined
      ? ''
      : /[",\n]/.test(String(v))
        ? `"${String(v).replace(/"/g, '""')}"`
        : String(v);
  const header = cols.map((c) => (c === 'k' ? xColumn : c));
  return (
    [header.map(esc).join(','), ...results.map((r) => cols.map((c) => esc(r[c])).join(','))].join(
      '\n',
    ) + '\n'
  );
}

/** The per-step loss and per-epoch kNN (%) of each run, from its metrics.jsonl. */
export function runCurves(
  results: readonly StudyResult[],
  outDir?: string,
): {
  loss: { run: string; series: string; k: number; step: number; loss: number }[];
  knn: { run: string; series: string; k: number; epoch: number; knn: number }[];
} {
  const loss: ReturnType<typeof runCurves>['loss'] = [];
  const knn: ReturnType<typeof runCurves>['knn'] = [];
  for (const r of results) {
    const file = join(outDir ? runFolder(outDir, r) : r.runPath, 'metrics.jsonl');
    if (!existsSync(file)) continue;
    const at = { run: r.id, series: r.series, k: r.k };
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const m = JSON.parse(line) as Record<string, number>;
      if (typeof m.loss === 'number') loss.push({ ...at, step: m.step!, loss: m.loss });
      if (typeof m.knn_accuracy === 'number')
        knn.push({ ...at, epoch: m.epoch!, knn: 100 * m.knn_accuracy });
    }
  }
  return { loss, knn };
}

/** Mean, mean - std and mean + std over the seeds of each (line, position). */
export function overSeeds(
  points: readonly { line: string; at: number; value: number }[],
): CurvePoint[] {
  const by = new Map<string, { line: string; at: number; values: number[] }>();
  for (const p of points) {
    const key = `${p.line}\u0000${p.at}`;
    const g = by.get(key) ?? { line: p.line, at: p.at, values: [] };
    g.values.push(p.value);
    by.set(key, g);
  }
  return [...by.values()].map(({ line, at, values }) => {
    const { mean, std } = meanStd(values);
    return { line, at, mean, lo: mean - std, hi: mean + std, n: values.length };
  });
}

/** The kNN figure's points: one per (series, x), mean ± std over seeds, in %. */
export function studyPoints(
  results: readonly StudyResult[],
  label: (series: string) => string,
  xLabel: (k: number) => string,
): StudyPoint[] {
  const { series, ks, at } = groups(results);
  return series.flatMap((s) =>
    ks
      .filter((k) => at(s, k).length > 0)
      .map((k) => {
        const { mean, std } = meanStd(at(s, k).map((r) => 100 * r.knn));
        const n = at(s, k).length;
        return { series: label(s), k, xText: xLabel(k), mean, lo: mean - std, hi: mean + std, n };
      }),
  );
}

/**
 * A baseline over the runs that measured it (a fraction): its mean, and its text
 * in %, with the range when runs differ (e.g. the random-init encoder of each seed).
 */
function baseline(
  results: readonly StudyResult[],
  f: (r: StudyResult) => number | undefined,
): { value: number; text: string } | undefined {
  const v = measured(results, f);
  if (!v.length) return undefined;
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const [lo, hi] = [Math.min(...v), Math.max(...v)];
  const range = hi > lo ? ` (mean of ${v.length} runs, ${pct(lo)}-${pct(hi)}%)` : '';
  return { value: mean, text: `${pct(mean)}%${range}` };
}

/**
 * The reference lines of the study figure, as the table gives them (same
 * protocol; the mean over runs, with its range when runs differ): the random-init
 * encoder's and raw pixels' kNN, in %.
 */
export function references(results: readonly StudyResult[]): Reference[] {
  const init = baseline(results, (r) => r.knnRandomInit);
  const pixels = baseline(results, (r) => r.knnRawPixels);
  return [
    ...(init ? [{ value: 100 * init.value, text: `random-init encoder ${init.text}` }] : []),
    ...(pixels ? [{ value: 100 * pixels.value, text: `raw pixels ${pixels.text}` }] : []),
  ];
}

/** The study figure: kNN accuracy against the swept value, the baselines as reference lines. */
export async function studyFigure(
  results: readonly StudyResult[],
  meta: ReportMeta,
  subtitle: string[],
): Promise<RenderedFigure> {
  const legend = seriesLegend(results, meta);
  const tested = testedX(results);
  const x: XAxis = { ...tested, title: xTitle(meta), scale: meta.xScale ?? 'log' };
  const key: StyleKey = { field: 'series', title: legend.title, domain: legend.names };
  const points = studyPoints(results, legend.label, tested.label);
  return renderFigure(
    studyPlotSpec(points, x, key, { text: meta.title, subtitle }, references(results)),
    meta.title,
    lineLegends,
  );
}

/** A run's objective: its loss as trained (config.yaml's loss.name, else its method's own loss). */
function objectiveOf(outDir: string, r: StudyResult): string {
  const config = runConfig(runFolder(outDir, r));
  if (!config) return 'loss';
  return config.loss.name ?? `${config.strategy.name}'s loss`;
}

/**
 * The loss panels of the curves figure: one per objective (a loss of another
 * objective, or over another K, is another quantity: no shared axis across
 * objectives). Within a panel x is the step when its runs have the same number
 * of steps, else the share of each run's steps (%), so runs of different lengths
 * (e.g. end-to-end's batch sizes) line up by training progress; the subtitle says which.
 */
export function lossPanels(
  outDir: string,
  results: readonly StudyResult[],
  loss: ReturnType<typeof runCurves>['loss'],
  line: (p: { series: string; k: number }) => string,
  domain: readonly string[],
  seeds: string | undefined,
): LossPanel[] {
  const byRun = new Map(results.map((r) => [r.id, r]));
  const objective = new Map(results.map((r) => [r.id, objectiveOf(outDir, r)]));
  const objectives = [...new Set(results.map((r) => objective.get(r.id)!))];
  return objectives.flatMap((o) => {
    const points = loss.filter((p) => objective.get(p.run) === o);
    if (points.length === 0) return [];
    const steps = [...new Set(points.map((p) => byRun.get(p.run)!.steps))].sort((a, b) => a - b);
    const same = steps.length === 1;
    const at = (p: (typeof points)[number]) =>
      same ? p.step : (100 * p.step) / byRun.get(p.run)!.steps;
    const x = same ? 'step' : "training progress (% of the run's steps)";
    const lines = overSeeds(points.map((p) => ({ line: line(p), at: at(p), value: p.loss })));
    return [
      {
        title: {
          text: `Training loss: ${o}`,
          subtitle: [
            same
              ? `per step (${steps[0]!.toLocaleString('en-US')} steps per run)`
              : `x: share of each run's steps (runs of ${steps.map((n) => n.toLocaleString('en-US')).join(' / ')} steps)`,
            ...(seeds ? [`${seeds}: bands`] : []),
          ],
        },
        x,
        points: withMarkers(lines, domain),
      },
    ];
  });
}

/**
 * The curves figure: training loss (one panel per objective) and kNN per epoch,
 * one line per configuration (series x value), seeds as bands / error bars.
 * Undefined when no run folder has a metrics.jsonl.
 */
export async function curvesFigure(
  outDir: string,
  results: readonly StudyResult[],
  meta: ReportMeta,
  knnSubtitle: string[],
): Promise<RenderedFigure | undefined> {
  const { loss, knn } = runCurves(results, outDir);
  if (loss.length === 0) return undefined;
  const legend = seriesLegend(results, meta);
  const x = testedX(results);
  const many = legend.names.length > 1;
  const line = (p: { series: string; k: number }) =>
    many && x.ks.length > 1
      ? `${legend.label(p.series)}, ${x.label(p.k)}`
      : many
        ? legend.label(p.series)
        : x.label(p.k);
  const { series, ks, at } = groups(results);
  const domain = series.flatMap((s) =>
    ks.filter((k) => at(s, k).length > 0).map((k) => line({ series: s, k })),
  );
  const title =
    many && x.ks.length > 1
      ? `${legend.title}, ${meta.axis ?? xTitle(meta)}`
      : many
        ? legend.title
        : xTitle(meta);
  const seeds = seedsText(results);
  const knnPoints = overSeeds(knn.map((p) => ({ line: line(p), at: p.epoch, value: p.knn })));
  return renderFigure(
    curvesSpec(
      lossPanels(outDir, results, loss, line, domain, seeds),
      { points: knnPoints, subtitle: knnSubtitle },
      { field: 'line', title, domain },
      { text: meta.title, subtitle: [] },
    ),
    meta.title,
    lineLegends,
  );
}

/** Marks about 8 points per line for markers, staggered between lines so they do not pile up. */
function withMarkers(points: CurvePoint[], lines: readonly string[]): CurvePoint[] {
  const byLine = new Map<string, number[]>();
  for (const p of points) byLine.set(p.line, [...(byLine.get(p.line) ?? []), p.at]);
  const rank = new Map<string, Map<number, number>>();
  for (const [line, ats] of byLine) {
    rank.set(line, new Map([...ats].sort((a, b) => a - b).map((at, i) => [at, i])));
  }
  return points.map((p) => {
    const n = byLine.get(p.line)!.length;
    const every = Math.max(1, Math.round(n / 8));
    const offset = Math.round((lines.indexOf(p.line) * every) / Math.max(1, lines.length));
    return { ...p, marker: (rank.get(p.line)!.get(p.at)! + offset) % every === 0 };
  });
}

/**
 * Writes the study report into its folder (titled with the training budget as
 * run, {@link titleWithBudget}): table.md, results.csv, the study
 * figure `knn-vs-<axis>.{png,svg,pdf}` (`knn-vs-k.*` for series studies, whose x
 * is K) and `curves.{png,svg,pdf}`. Returns the paths written, table.md first.
 */
export async function writeReport(
  outDir: string,
  results: readonly StudyResult[],
  studyMeta: ReportMeta,
): Promise<string[]> {
  const meta = {
    ...studyMeta,
    title: titleWithBudget(studyMeta.title, budgetText(outDir, results)),
  };
  const protocol = protocolText(studyProtocols(outDir, results));
  const seeds = seedsText(results);
  const subtitle = [
    ...(protocol ? [`kNN top-1 ${protocol.knn}`, protocol.data] : ['kNN top-1 at the final epoch']),
    ...(seeds ? [`${seeds}: error bars / bands`] : []),
  ];
  const files: string[] = [];
  const write = (name: string, data: string | Uint8Array) => {
    writeFileAtomic(join(outDir, name), data);
    files.push(join(outDir, name));
  };
  const probe = probeText(results);
  write(
    'table.md',
    meta.categorical
      ? categoryTable(results, meta, protocol)
      : markdownTable(results, meta, protocol),
  );
  write('results.csv', csv(results, meta.axis ?? 'k'));
  const writeFigure = (stem: string, f: RenderedFigure) => {
    write(`${stem}.png`, f.png);
    write(`${stem}.svg`, f.svg);
    write(`${stem}.pdf`, f.pdf);
  };
  writeFigure(
    figureStem(meta),
    meta.categorical
      ? await categoryFigure(results, meta, [...subtitle, ...(probe ? [shortProbe(results)] : [])])
      : await studyFigure(results, meta, subtitle),
  );
  const knnSubtitle = [
    ...(protocol ? [protocol.knn.replace(/^at the final epoch: /, ''), protocol.data] : []),
    ...(seeds ? [`${seeds}: error bars`] : []),
  ];
  const curves = await curvesFigure(outDir, results, meta, knnSubtitle);
  if (curves) writeFigure('curves', curves);
  return files;
}

/** The probe's protocol in a figure subtitle's length. */
function shortProbe(results: readonly StudyResult[]): string {
  const probed = results.filter((r) => r.linear !== undefined);
  const epochs = [...new Set(probed.map((r) => r.linearEpochs))].join(' / ');
  const images = [...new Set(probed.map((r) => r.linearTrainSize?.toLocaleString('en-US')))].join(
    ' / ',
  );
  const lr = probed.some((r) => r.linearLrSelected)
    ? 'lr selected on held-out training images'
    : `lr ${[...new Set(probed.map((r) => r.linearLr))].join(' / ')}`;
  return `linear probe: frozen pooled features, ${images} training images, ${epochs} epochs, ${lr}`;
}

/**
 * `contrast study report <dir>`: re-renders a study folder's report from its
 * results.jsonl and the study.yaml stored beside it (either may come from an
 * earlier version), one result per series, x and seed (the newest recorded), in
 * the file's series order. Returns the paths written; none when there are no results.
 */
export async function reportStudyFolder(outDir: string): Promise<string[]> {
  // a configuration changed since (a new id for the same cell) leaves its old line:
  // the cell's newest result stands, as `study run` reports only the current ones
  const cell = (r: StudyResult) => JSON.stringify([r.series, r.k, r.seed]);
  const results = [...new Map(readResults(outDir).map((r) => [cell(r), r])).values()];
  if (results.length === 0) return [];
  const saved = join(outDir, 'study.yaml');
  const study = existsSync(saved)
    ? ((parseYaml(readFileSync(saved, 'utf8')) ?? {}) as Record<string, unknown>)
    : {};
  const labels = Array.isArray(study.series)
    ? (study.series as { label?: unknown }[]).map((s) => String(s?.label ?? ''))
    : [];
  return writeReport(outDir, inSeriesOrder(results, labels), reportMeta(study, outDir));
}
