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
  knn: number;
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

/** Mechanism x K table in markdown: kNN top-1 (%) per cell. */
export function markdownTable(results: readonly StudyResult[], title: string): string {
  const series = [...new Set(results.map((r) => r.series))];
  const ks = [...new Set(results.map((r) => r.k))].sort((a, b) => a - b);
  const cell = (s: string, k: number) =>
    pct(results.find((r) => r.series === s && r.k === k)?.knn) || '-';
  const lines = [
    `## ${title}`,
    '',
    'kNN top-1 accuracy (%) on the test split, by mechanism (rows) and K, negatives per query (columns).',
    '',
    `| mechanism | ${ks.map((k) => `K = ${k}`).join(' | ')} |`,
    `|---|${ks.map(() => '---:').join('|')}|`,
    ...series.map((s) => `| ${s} | ${ks.map((k) => cell(s, k)).join(' | ')} |`),
  ];
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
    'knn',
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
): Promise<Buffer> {
  const values = results.map((r) => ({ series: r.series, k: r.k, knn: 100 * r.knn }));
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 520,
    height: 320,
    background: 'white',
    data: { values },
    mark: { type: 'line', point: { size: 60, filled: true }, strokeWidth: 2 },
    encoding: {
      x: { field: 'k', type: 'quantitative', scale: { type: 'log', base: 2 }, title: xLabel },
      y: {
        field: 'knn',
        type: 'quantitative',
        scale: { zero: false },
        title: 'kNN top-1 accuracy (%)',
      },
      color: { field: 'series', type: 'nominal', title: 'mechanism' },
    },
    config: { font: 'DejaVu Sans' },
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
  }).render();
  return png.asPng();
}

/** Writes table.md, results.csv and knn-vs-k.png into the study folder. */
export async function writeReport(
  outDir: string,
  results: readonly StudyResult[],
  title: string,
  xLabel = 'K (negatives per query)',
): Promise<string[]> {
  const files = [
    join(outDir, 'table.md'),
    join(outDir, 'results.csv'),
    join(outDir, 'knn-vs-k.png'),
  ];
  writeFileAtomic(files[0]!, markdownTable(results, title));
  writeFileAtomic(files[1]!, csv(results));
  writeFileAtomic(files[2]!, await plotPng(results, title, xLabel));
  return files;
}
