import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { writeFileAtomic } from '@contrast/core';

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

export function readResults(outDir: string): StudyResult[] {
  const file = join(outDir, 'results.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as StudyResult);
}

const pct = (x: number | undefined) =>
  x === undefined || Number.isNaN(x) ? '' : (100 * x).toFixed(2);

/** Mean and (sample) standard deviation. */
export function meanStd(xs: readonly number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std =
    xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
}

/** Results per (series, x), over seeds. */
function groups(results: readonly StudyResult[]) {
  const series = [...new Set(results.map((r) => r.series))];
  const ks = [...new Set(results.map((r) => r.k))].sort((a, b) => a - b);
  const at = (s: string, k: number) => results.filter((r) => r.series === s && r.k === k);
  const column = (k: number) => {
    const label = results.find((r) => r.k === k)?.xLabel;
    return label === undefined ? `K = ${k}` : label;
  };
  return { series, ks, at, column };
}

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

/** Series x value table in markdown: kNN top-1 (%), mean ± std over seeds. */
export function markdownTable(results: readonly StudyResult[], title: string, xName = 'K'): string {
  const { series, ks, at, column } = groups(results);
  const seeds = new Set(results.map((r) => r.seed ?? 0)).size;
  const header = (first: string) => [
    `| ${first} | ${ks.map((k) => column(k)).join(' | ')} |`,
    `|---|${ks.map(() => '---:').join('|')}|`,
  ];
  const lines = [
    `## ${title}`,
    '',
    `kNN top-1 accuracy (%) on the test split; rows: series, columns: ${xName}${seeds > 1 ? `; mean ± std over ${seeds} seeds` : ''}.`,
    '',
    ...header('series'),
    ...series.map(
      (s) => `| ${s} | ${ks.map((k) => cellOf(at(s, k), (r) => r.knn, 2, 100)).join(' | ')} |`,
    ),
  ];
  if (results.some((r) => r.alignment !== undefined)) {
    lines.push(
      '',
      'Alignment / uniformity (Wang & Isola 2020) of the final embeddings on test images (lower is better for both):',
      '',
      ...header('series'),
      ...series.map(
        (s) =>
          `| ${s} | ${ks
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
      `Reference: random-init encoder ${pct(init[0])}%, raw pixels ${pct(pixels[0])}%.`,
    );
  const wall = results.reduce((s, r) => s + r.wallSeconds, 0);
  lines.push(
    '',
    `${results.length} runs, ${(wall / 60).toFixed(1)} min of training and evaluation in total.`,
    '',
  );
  return lines.join('\n');
}

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

/** kNN accuracy against K, one line per series, log-scaled x: rendered to PNG. */
export async function plotPng(
  results: readonly StudyResult[],
  title: string,
  xLabel: string,
  xScale: 'log' | 'linear' = 'log',
): Promise<Buffer> {
  const { series, ks, at } = groups(results);
  const values = series.flatMap((s) =>
    ks
      .filter((k) => at(s, k).length > 0)
      .map((k) => ({ series: s, k, knn: 100 * meanStd(at(s, k).map((r) => r.knn)).mean })),
  );
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 520,
    height: 320,
    background: 'white',
    data: { values },
    mark: { type: 'line', point: { size: 60, filled: true }, strokeWidth: 2 },
    encoding: {
      x: {
        field: 'k',
        type: 'quantitative',
        scale: xScale === 'log' ? { type: 'log', base: 2 } : { zero: false },
        title: xLabel,
      },
      y: {
        field: 'knn',
        type: 'quantitative',
        scale: { zero: false },
        title: 'kNN top-1 accuracy (%)',
      },
      color: { field: 'series', type: 'nominal', title: 'series' },
    },
    config: { font: 'DejaVu Sans' },
  };
  return renderPng(spec);
}

/** The per-step loss and per-epoch kNN of each run, from its metrics.jsonl. */
export function runCurves(results: readonly StudyResult[]): {
  loss: { run: string; step: number; loss: number }[];
  knn: { run: string; epoch: number; knn: number }[];
} {
  const loss: { run: string; step: number; loss: number }[] = [];
  const knn: { run: string; epoch: number; knn: number }[] = [];
  for (const r of results) {
    const file = join(r.runPath, 'metrics.jsonl');
    if (!existsSync(file)) continue;
    const run = `${r.series} ${r.xLabel ?? r.k}${r.seed ? ` s${r.seed}` : ''}`;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const m = JSON.parse(line) as Record<string, number>;
      if (typeof m.loss === 'number') loss.push({ run, step: m.step!, loss: m.loss });
      if (typeof m.knn_accuracy === 'number')
        knn.push({ run, epoch: m.epoch!, knn: 100 * m.knn_accuracy });
    }
  }
  return { loss, knn };
}

async function renderPng(spec: TopLevelSpec): Promise<Buffer> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return new Resvg(svg, {
    fitTo: { mode: 'zoom', value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
  })
    .render()
    .asPng();
}

/** Loss against step and kNN against epoch, one line per run. */
export async function curvesPng(results: readonly StudyResult[], title: string): Promise<Buffer> {
  const { loss, knn } = runCurves(results);
  const color = { field: 'run', type: 'nominal' as const, title: 'run' };
  return renderPng({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    background: 'white',
    hconcat: [
      {
        width: 380,
        height: 260,
        data: { values: loss },
        mark: { type: 'line', strokeWidth: 1 },
        encoding: {
          x: { field: 'step', type: 'quantitative', title: 'step' },
          y: {
            field: 'loss',
            type: 'quantitative',
            scale: { zero: false },
            title: 'training loss',
          },
          color,
        },
      },
      {
        width: 300,
        height: 260,
        data: { values: knn },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'epoch', type: 'quantitative', title: 'epoch', axis: { tickMinStep: 1 } },
          y: { field: 'knn', type: 'quantitative', scale: { zero: false }, title: 'kNN top-1 (%)' },
          color,
        },
      },
    ],
    config: { font: 'DejaVu Sans' },
  } as TopLevelSpec);
}

/** Writes table.md, results.csv, knn-vs-k.png and curves.png into the study folder. */
export async function writeReport(
  outDir: string,
  results: readonly StudyResult[],
  title: string,
  xLabel = 'K (negatives per query)',
  xScale: 'log' | 'linear' = 'log',
): Promise<string[]> {
  const files = [
    join(outDir, 'table.md'),
    join(outDir, 'results.csv'),
    join(outDir, 'knn-vs-k.png'),
    join(outDir, 'curves.png'),
  ];
  writeFileAtomic(files[0]!, markdownTable(results, title, xLabel));
  writeFileAtomic(files[1]!, csv(results));
  writeFileAtomic(files[2]!, await plotPng(results, title, xLabel, xScale));
  writeFileAtomic(files[3]!, await curvesPng(results, title));
  return files;
}
