import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '@contrast/core';
import { parse as parseYaml } from 'yaml';
import {
  curvesSpec,
  lineLegends,
  studyPlotSpec,
  type CurvePoint,
  type StudyPoint,
  type StyleKey,
  type XAxis,
} from './figures.js';
import {
  figureStem,
  protocolText,
  reportMeta,
  seedsText,
  seriesLegend,
  studyProtocols,
  testedX,
  xTitle,
  type ReportMeta,
} from './labels.js';
import { renderFigure, type RenderedFigure } from './render.js';
import { groups, meanStd, readResults, runFolder, type StudyResult } from './results.js';

const pct = (x: number | undefined) =>
  x === undefined || Number.isNaN(x) ? '' : (100 * x).toFixed(2);

function cellOf(
  rs: readonly StudyResult[],
  value: (r: StudyResult) => number | undefined,
  digits: number,
  scale = 1,
): string {
  const xs = rs.map(value).filter((x): x is number => x !== undefined && !Number.isNaN(x));
  if (xs.length === 0) return '-';
  const { mean, std } = meanStd(xs.map((x) => x * scale));
  return xs.length > 1 ? `${mean.toFixed(digits)} ± ${std.toFixed(digits)}` : mean.toFixed(digits);
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
  const init = results.map((r) => r.knnRandomInit).filter((x): x is number => x !== undefined);
  const pixels = results.map((r) => r.knnRawPixels).filter((x): x is number => x !== undefined);
  if (init.length)
    lines.push(
      '',
      `Reference (same protocol): random-init encoder ${pct(init[0])}%, raw pixels ${pct(pixels[0])}%.`,
    );
  const wall = results.reduce((s, r) => s + r.wallSeconds, 0);
  lines.push(
    '',
    `${results.length} runs, ${(wall / 60).toFixed(1)} min of training and evaluation in total.`,
    '',
  );
  return lines.join('\n');
}

/** results.csv: one row per run (every seed), RFC 4180 quoting where a value needs it. */
export function csv(results: readonly StudyResult[]): string {
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
  return (
    [cols.join(','), ...results.map((r) => cols.map((c) => esc(r[c])).join(','))].join('\n') + '\n'
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

/** The study figure: kNN accuracy against the swept value. */
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
    studyPlotSpec(points, x, key, { text: meta.title, subtitle }),
    meta.title,
    lineLegends,
  );
}

/**
 * The curves figure: loss per step and kNN per epoch, one line per configuration
 * (series x value), seeds as bands / error bars. Undefined when no run folder
 * has a metrics.jsonl.
 */
export async function curvesFigure(
  outDir: string,
  results: readonly StudyResult[],
  meta: ReportMeta,
  subtitle: string[],
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
  const lossPoints = withMarkers(
    overSeeds(loss.map((p) => ({ line: line(p), at: p.step, value: p.loss }))),
    domain,
  );
  const knnPoints = overSeeds(knn.map((p) => ({ line: line(p), at: p.epoch, value: p.knn })));
  return renderFigure(
    curvesSpec(
      lossPoints,
      knnPoints,
      { field: 'line', title, domain },
      {
        text: meta.title,
        subtitle,
      },
    ),
    meta.title,
    lineLegends,
  );
}

/** Marks about 8 steps per line for markers, staggered between lines so they do not pile up. */
function withMarkers(points: CurvePoint[], lines: readonly string[]): CurvePoint[] {
  const last = new Map<string, number>();
  for (const p of points) last.set(p.line, Math.max(last.get(p.line) ?? 0, p.at));
  return points.map((p) => {
    const every = Math.max(1, Math.round((last.get(p.line) ?? 1) / 8));
    const offset = Math.round((lines.indexOf(p.line) * every) / Math.max(1, lines.length));
    return { ...p, marker: (p.at + offset) % every === 0 };
  });
}

/**
 * Writes the study report into its folder: table.md, results.csv, the study
 * figure `knn-vs-<axis>.{png,svg,pdf}` (`knn-vs-k.*` for series studies, whose x
 * is K) and `curves.{png,svg,pdf}`. Returns the paths written, table.md first.
 */
export async function writeReport(
  outDir: string,
  results: readonly StudyResult[],
  meta: ReportMeta,
): Promise<string[]> {
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
  write('table.md', markdownTable(results, meta, protocol));
  write('results.csv', csv(results));
  const writeFigure = (stem: string, f: RenderedFigure) => {
    write(`${stem}.png`, f.png);
    write(`${stem}.svg`, f.svg);
    write(`${stem}.pdf`, f.pdf);
  };
  writeFigure(figureStem(meta), await studyFigure(results, meta, subtitle));
  const curves = await curvesFigure(outDir, results, meta, subtitle);
  if (curves) writeFigure('curves', curves);
  return files;
}

/**
 * `contrast study report <dir>`: re-renders a study folder's report from its
 * results.jsonl and the study.yaml stored beside it (either may come from an
 * earlier version). Returns the paths written; none when there are no results.
 */
export async function reportStudyFolder(outDir: string): Promise<string[]> {
  const results = readResults(outDir);
  if (results.length === 0) return [];
  const saved = join(outDir, 'study.yaml');
  const study = existsSync(saved)
    ? ((parseYaml(readFileSync(saved, 'utf8')) ?? {}) as Record<string, unknown>)
    : {};
  return writeReport(outDir, results, reportMeta(study, outDir));
}
