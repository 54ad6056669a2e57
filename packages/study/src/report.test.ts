import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PDFDocument } from 'pdf-lib';
import { describe, expect, it } from 'vitest';
import { figureStem, reportMeta, titleWithBudget, xTitle } from './labels.js';
import { loweredLabels } from './figures.js';
import { PNG_ZOOM, svgSize, type RenderedFigure } from './render.js';
import { curvesFigure, references, reportStudyFolder, studyFigure, writeReport } from './report.js';
import type { StudyResult } from './results.js';

const decode = (s: string) =>
  s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');

/** The texts inside every `<g class="mark-text role-<role>">` of an SVG, in order. */
function texts(svg: string, role: string): string[] {
  const groups = svg.matchAll(new RegExp(`<g class="mark-text role-${role}"[^>]*>(.*?)</g>`, 'g'));
  return [...groups].flatMap((g) =>
    [...g[1]!.matchAll(/<text[^>]*>(.*?)<\/text>/g)].map((t) =>
      decode(t[1]!.replace(/<tspan[^>]*>(.*?)<\/tspan>/g, '$1\n').trimEnd()),
    ),
  );
}

/** The tick labels of the x axis (the first labelled axis after the X-axis description). */
function xTickLabels(svg: string): string[] {
  const after = svg.slice(svg.indexOf('aria-label="X-axis'));
  const group = /<g class="mark-text role-axis-label"[^>]*>(.*?)<\/g>/.exec(after)?.[1] ?? '';
  return [...group.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((t) => decode(t[1]!));
}

/** The data (lo, hi) Vega records on each error bar's rule, in order. */
function errorBars(svg: string): { lo: number; hi: number }[] {
  return [...svg.matchAll(/<line aria-label="([^"]*)"[^>]*aria-roledescription="errorbar"/g)].map(
    (m) => ({
      lo: Number(/\blo: ([-\d.e]+)/.exec(m[1]!)![1]),
      hi: Number(/\bhi: ([-\d.e]+)/.exec(m[1]!)![1]),
    }),
  );
}

/** A run folder with the config.yaml and metrics.jsonl a real run writes (2 epochs of 4 steps). */
function runDir(root: string, id: string, loss: number, knn: [number, number]): string {
  const dir = join(root, 'runs', id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'config.yaml'),
    'name: r\nstrategy: { name: momentum-queue }\ndata: { trainSubset: 20000 }\n' +
      'model: { encoder: convnet }\neval: { knn: { k: 200, t: 0.1, testSize: 2000 } }\n',
  );
  const lines = [1, 2, 3, 4, 5, 6, 7, 8].map((step) =>
    JSON.stringify({ step, epoch: Math.ceil(step / 4), loss: loss - step / 10 }),
  );
  lines.push(JSON.stringify({ step: 4, epoch: 1, knn_accuracy: knn[0] }));
  lines.push(JSON.stringify({ step: 8, epoch: 2, knn_accuracy: knn[1] }));
  writeFileSync(join(dir, 'metrics.jsonl'), `${lines.join('\n')}\n`);
  return dir;
}

const MOMENTA = [0, 0.9, 0.99];
const QUEUES = [256, 1024, 4096, 16384];

/** A queue-size x momentum grid with two seeds per point; knn = 0.7 + momentum / 10 + seed / 100. */
function gridStudy(root: string, seeds: number[]): StudyResult[] {
  return MOMENTA.flatMap((m) =>
    QUEUES.flatMap((k) =>
      seeds.map((seed) => {
        const id = `m${m}-k${k}-s${seed}`;
        const knn = 0.7 + m / 10 + seed / 100;
        return {
          id,
          series: `strategy.momentum=${m}`,
          k,
          xLabel: String(k),
          seed,
          knn,
          finalLoss: 5,
          imgPerSec: 900,
          wallSeconds: 60,
          steps: 8,
          epochs: 2,
          runPath: runDir(root, id, 8 + seed, [knn - 0.02, knn]),
        };
      }),
    ),
  );
}

const queueMeta = reportMeta(
  {
    description: 'Queue size K',
    x: 'queue size K',
    xScale: 'log',
    axis: 'strategy.queueSize',
  },
  'x',
);

function expectPng(png: Buffer, f: RenderedFigure): void {
  expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  expect(png.readUInt32BE(16)).toBe(Math.round(f.width * PNG_ZOOM)); // IHDR width
  expect(png.readUInt32BE(20)).toBe(Math.round(f.height * PNG_ZOOM)); // IHDR height
}

async function expectPdf(pdf: Buffer, f: RenderedFigure, title: string): Promise<void> {
  expect(pdf.subarray(0, 7).toString('latin1')).toBe('%PDF-1.');
  expect(pdf.subarray(-6).toString('latin1')).toMatch(/%%EOF\s*$/);
  const doc = await PDFDocument.load(pdf);
  expect(doc.getPageCount()).toBe(1);
  expect(doc.getPage(0).getSize()).toEqual({ width: f.width, height: f.height });
  expect(doc.getTitle()).toBe(title);
}

describe('study figure on the real renderer (vega-lite -> SVG, resvg PNG, pdfkit PDF)', () => {
  it('labels the legend whole by value under the field, ticks at the tested K, error bars from seeds', async () => {
    const root = mkdtempSync(join(tmpdir(), 'contrast-figure-'));
    const results = gridStudy(root, [0, 1]);
    const f = await studyFigure(results, queueMeta, ['protocol line']);
    expect(texts(f.svg, 'legend-title')).toEqual(['strategy.momentum']);
    expect(texts(f.svg, 'legend-label')).toEqual(['0', '0.9', '0.99']);
    expect(xTickLabels(f.svg)).toEqual(['256', '1024', '4096', '16384']);
    expect(texts(f.svg, 'axis-title')).toContain('queue size K (strategy.queueSize)');
    // one error bar per (series, K), spanning mean ± sample std of the two seeds
    const bars = errorBars(f.svg);
    expect(bars).toHaveLength(MOMENTA.length * QUEUES.length);
    const mean = 100 * (0.7 + 0.09 + 0.005);
    const std = 100 * (0.01 / Math.SQRT2); // two values 0.01 apart
    expect(bars.some((b) => Math.abs(b.lo - (mean - std)) < 1e-6)).toBe(true);
    for (const b of bars) expect(b.hi - b.lo).toBeCloseTo(2 * std, 6);
    // every series has its own marker and dash pattern, not only a colour
    const visible = [...f.svg.matchAll(/<path [^>]*aria-roledescription="point"[^>]*>/g)]
      .map((m) => m[0])
      .filter((tag) => tag.includes('opacity="1"')); // not the legend layer's hidden points
    const markers = new Set(visible.map((tag) => /\bd="([^"]+)"/.exec(tag)![1]));
    expect(visible).toHaveLength(MOMENTA.length * QUEUES.length);
    const dashes = new Set(
      [...f.svg.matchAll(/aria-roledescription="line mark"[^>]*stroke-dasharray="([^"]*)"/g)].map(
        (m) => m[1],
      ),
    );
    expect(markers.size).toBe(3);
    expect(dashes.size).toBe(3);
    expectPng(f.png, f);
    await expectPdf(f.pdf, f, 'Queue size K');
  });

  it('labels log-scale temperature ticks exactly as tested (no 1.000000-style extras)', async () => {
    const taus = [0.05, 0.07, 0.1, 0.2];
    const results = taus.map((t, i) => ({
      ...gridStudy(mkdtempSync(join(tmpdir(), 'contrast-figure-')), [0])[0]!,
      id: `t${i}`,
      series: 'temperature',
      k: t,
      xLabel: String(t),
      knn: 0.7 + i / 100,
    }));
    const meta = reportMeta({ x: 'temperature', axis: 'loss.temperature', xScale: 'log' }, 'x');
    const f = await studyFigure(results, meta, []);
    expect(xTickLabels(f.svg)).toEqual(['0.05', '0.07', '0.1', '0.2']);
    expect(errorBars(f.svg)).toHaveLength(0); // one seed: no error bars
    expect(texts(f.svg, 'legend-label')).toEqual([]); // one series: no legend
  });

  it('keeps a long series-form label whole and places non-numeric values as points', async () => {
    const long = 'momentum-queue with a shuffled, split batch norm over eight splits';
    const base = gridStudy(mkdtempSync(join(tmpdir(), 'contrast-figure-')), [0])[0]!;
    const results: StudyResult[] = [
      { ...base, id: 'a', series: long, k: 0, xLabel: '"cosine"' },
      { ...base, id: 'b', series: long, k: 1, xLabel: '"step"' },
      { ...base, id: 'c', series: 'end-to-end', k: 0, xLabel: '"cosine"' },
    ];
    const meta = reportMeta({ axis: 'optim.schedule', legend: 'mechanism' }, 'x');
    const f = await studyFigure(results, meta, []);
    expect(texts(f.svg, 'legend-title')).toEqual(['mechanism']);
    expect(texts(f.svg, 'legend-label')).toEqual([long, 'end-to-end']);
    expect(xTickLabels(f.svg)).toEqual(['cosine', 'step']);
  });
});

describe('study figure: colliding ticks, reference lines, title as run', () => {
  it('labels K = 254 and 256 both, the second a row lower, and draws the baselines, labelled', async () => {
    const base = gridStudy(mkdtempSync(join(tmpdir(), 'contrast-figure-')), [0])[0]!;
    const at = (series: string, k: number): StudyResult => ({
      ...base,
      id: `${series}${k}`,
      series,
      k,
      xLabel: undefined,
      knnRandomInit: 0.652,
      knnRawPixels: 0.795,
    });
    const results = [
      ...[126, 254, 510].map((k) => at('end-to-end', k)),
      ...[256, 1024].map((k) => at('momentum-queue', k)),
    ];
    const meta = reportMeta({ legend: 'strategy.name' }, 'Mechanisms');
    const f = await studyFigure(results, meta, []);
    // every tested K labelled; 256, beside 254, as a two-line label whose first line is empty
    expect(xTickLabels(f.svg)).toEqual(['126', '254', '510', '1024']);
    expect(f.svg).toContain('<tspan/><tspan x="0" dy="13">256</tspan>');
    expect(texts(f.svg, 'mark layer_1_marks')).toEqual([
      'random-init encoder 65.20%',
      'raw pixels 79.50%',
    ]);
    expect(f.svg.match(/aria-roledescription="rule mark"/g) ?? []).toHaveLength(2);
  });

  it('draws a baseline that differs by seed at its mean, labelled with its range', () => {
    const base = gridStudy(mkdtempSync(join(tmpdir(), 'contrast-figure-')), [0])[0]!;
    // the random-init encoder per seed: 75.35, 75.25, 76.09 (mean 75.5633...); raw pixels the same for all
    const results = [0.7535, 0.7525, 0.7609].map((init, seed) => ({
      ...base,
      id: `s${seed}`,
      seed,
      knnRandomInit: init,
      knnRawPixels: 0.8178,
    }));
    const [init, pixels] = references(results);
    expect(init!.value).toBeCloseTo(75.5633, 3);
    expect(init!.text).toBe('random-init encoder 75.56% (mean of 3 runs, 75.25-76.09%)');
    expect(pixels).toEqual({ value: 81.78, text: 'raw pixels 81.78%' });
  });

  it('lowers exactly the labels that would come within 6 px of the previous one', () => {
    const axis = (ks: number[]) => ({
      title: 'K',
      ks,
      label: String,
      numeric: true,
      scale: 'log' as const,
    });
    expect(loweredLabels(axis([126, 254, 256, 510]), 126, 510)).toEqual([256]);
    expect(loweredLabels(axis([256, 1024, 4096, 16384]), 256, 16384)).toEqual([]);
    // linear, 0 to 0.999 over 428 px: 0.99 sits 38 px right of 0.9 (clear), 0.999 4 px from 0.99
    const linear = { ...axis([0, 0.9, 0.99, 0.999]), scale: 'linear' as const };
    expect(loweredLabels(linear, 0, 0.999)).toEqual([0.999]);
  });

  it('titles the report with the images and epochs as run (--scale), not as the description wrote them', async () => {
    expect(titleWithBudget('Queue size K', '20k images, 2 epochs')).toBe(
      'Queue size K: 20k images, 2 epochs',
    );
    const root = mkdtempSync(join(tmpdir(), 'contrast-report-'));
    // --scale 3: 20k images x 3 is the whole split (trainSubset 0), 2 epochs x 3 = 6
    const results = gridStudy(root, [0]).map((r) => ({ ...r, epochs: 6 }));
    for (const r of results) {
      const file = join(r.runPath, 'config.yaml');
      writeFileSync(
        file,
        readFileSync(file, 'utf8').replace('trainSubset: 20000', 'trainSubset: 0'),
      );
    }
    const meta = reportMeta(
      {
        description: 'Queue size K (Fashion-MNIST, ConvNet, 20k images, 2 epochs)',
        axis: 'strategy.queueSize',
        scale: 3,
      },
      'x',
    );
    await writeReport(root, results, meta);
    const title = 'Queue size K (Fashion-MNIST, ConvNet, full training split, 6 epochs)';
    for (const stem of ['knn-vs-strategy.queueSize', 'curves']) {
      expect(texts(readFileSync(join(root, `${stem}.svg`), 'utf8'), 'title-text')).toContain(title);
    }
    expect(readFileSync(join(root, 'table.md'), 'utf8')).toMatch(
      new RegExp(`^## ${title.replace(/[()]/g, '\\$&')}\n`),
    );
    expect(readFileSync(join(root, 'results.csv'), 'utf8')).toMatch(
      /^series,strategy\.queueSize,xLabel,/,
    );
  });
});

describe('curves figure on the real renderer', () => {
  it('one loss panel per objective, x as the share of each run when lengths differ; the kNN protocol over the kNN panel only', async () => {
    const root = mkdtempSync(join(tmpdir(), 'contrast-figure-'));
    const results = gridStudy(root, [0]).filter((r) => r.k === 256);
    // the momentum-0.99 run trained on another objective; the momentum-0.9 run twice as long
    const other = results.find((r) => r.series === 'strategy.momentum=0.99')!;
    const config = join(other.runPath, 'config.yaml');
    writeFileSync(
      config,
      readFileSync(config, 'utf8').replace('name: r\n', 'name: r\nloss: { name: nt-xent }\n'),
    );
    const long = results.find((r) => r.series === 'strategy.momentum=0.9')!;
    const f = (await curvesFigure(
      root,
      results.map((r) => (r === long ? { ...r, steps: 16 } : r)),
      queueMeta,
      ['k = 200, t = 0.1'],
    ))!;
    expect(new Set(texts(f.svg, 'title-text'))).toEqual(
      new Set([
        'Queue size K',
        "Training loss: momentum-queue's loss",
        'Training loss: nt-xent',
        'kNN top-1 accuracy per epoch',
      ]),
    );
    const subtitles = texts(f.svg, 'title-subtitle');
    expect(subtitles).toContain("x: share of each run's steps (runs of 8 / 16 steps)");
    expect(subtitles).toContain('per step (8 steps per run)');
    expect(subtitles.filter((t) => t.includes('k = 200'))).toEqual(['k = 200, t = 0.1']);
    expect(texts(f.svg, 'axis-title')).toEqual(
      expect.arrayContaining(["training progress (% of the run's steps)", 'step', 'epoch']),
    );
  });

  it('one whole-labelled line per configuration, seeds as bands and error bars', async () => {
    const root = mkdtempSync(join(tmpdir(), 'contrast-figure-'));
    const results = gridStudy(root, [0, 1]).filter((r) => r.k === 256);
    const f = (await curvesFigure(root, results, queueMeta, ['protocol line']))!;
    expect(texts(f.svg, 'legend-title')).toEqual(['strategy.momentum']);
    expect(texts(f.svg, 'legend-label')).toEqual(['0', '0.9', '0.99']);
    expect(f.svg).toContain('aria-roledescription="area mark"'); // loss band over the 2 seeds
    expect(errorBars(f.svg)).toHaveLength(3 * 2); // kNN: 3 lines x 2 epochs
    expect(texts(f.svg, 'axis-title')).toEqual(
      expect.arrayContaining(['step', 'training loss', 'epoch', 'kNN top-1 accuracy (%)']),
    );
    expectPng(f.png, f);
    await expectPdf(f.pdf, f, 'Queue size K');
    const one = (await curvesFigure(
      root,
      results.filter((r) => r.seed === 0),
      queueMeta,
      [],
    ))!;
    expect(one.svg).not.toContain('aria-roledescription="area mark"');
    expect(errorBars(one.svg)).toHaveLength(0);
  });
});

describe('writeReport and old study folders', () => {
  it('writes the figure after the swept field in PNG, SVG and PDF, and says subset where one was used', async () => {
    const root = mkdtempSync(join(tmpdir(), 'contrast-report-'));
    const files = await writeReport(root, gridStudy(root, [0, 1]), queueMeta);
    const names = files.map((f) => f.slice(root.length + 1));
    expect(names).toEqual([
      'table.md',
      'results.csv',
      'knn-vs-strategy.queueSize.png',
      'knn-vs-strategy.queueSize.svg',
      'knn-vs-strategy.queueSize.pdf',
      'curves.png',
      'curves.svg',
      'curves.pdf',
    ]);
    const table = readFileSync(join(root, 'table.md'), 'utf8');
    expect(table).toContain('k = 200, t = 0.1, convnet backbone features');
    expect(table).toContain('bank: first 20,000 training images (a subset)');
    expect(table).toContain('test: first 2,000 test images (a subset)');
    expect(table).not.toContain('test split');
    expect(table).toContain('| strategy.momentum | 256 | 1024 | 4096 | 16384 |');
    expect(table).toContain('| 0.9 | 79.50 ± 0.71 |');
    const svg = readFileSync(join(root, 'knn-vs-strategy.queueSize.svg'), 'utf8');
    expect(texts(svg, 'title-subtitle').join('\n')).toContain(
      'bank: first 20,000 training images (a subset); test: first 2,000 test images (a subset)',
    );
  });

  it('re-renders a folder written by an earlier version (old study.yaml, no run folders)', async () => {
    const root = mkdtempSync(join(tmpdir(), 'contrast-report-'));
    const old = gridStudy(mkdtempSync(join(tmpdir(), 'gone-')), [0])
      .filter((r) => r.series === 'strategy.momentum=0')
      .map((r) => ({ ...r, series: 'momentum-queue', runPath: `/nowhere/${r.id}` }));
    writeFileSync(
      join(root, 'results.jsonl'),
      old.map((r) => JSON.stringify({ ...r, xLabel: undefined })).join('\n'),
    );
    writeFileSync(
      join(root, 'study.yaml'),
      'name: mechanisms\ndescription: Three mechanisms\nx: K (negatives per query)\nxScale: log\n' +
        'series:\n  - { label: momentum-queue, points: [{ k: 256 }] }\nseeds: [0]\nscale: 1\n',
    );
    const files = await reportStudyFolder(root);
    expect(files.map((f) => f.slice(root.length + 1))).toEqual([
      'table.md',
      'results.csv',
      'knn-vs-k.png',
      'knn-vs-k.svg',
      'knn-vs-k.pdf',
    ]); // no run folders: no curves
    const table = readFileSync(join(root, 'table.md'), 'utf8');
    expect(table).toContain('| series | K = 256 | K = 1024 | K = 4096 | K = 16384 |');
    expect(table).toContain('protocol unknown');
    expect(xTickLabels(readFileSync(join(root, 'knn-vs-k.svg'), 'utf8'))).toEqual(
      QUEUES.map(String),
    );
    expect(existsSync(join(root, 'curves.png'))).toBe(false);
    expect(await reportStudyFolder(mkdtempSync(join(tmpdir(), 'empty-')))).toEqual([]);
  });

  it('names the axis and the files after the swept field; an old default x title yields to it', () => {
    expect(figureStem({ title: 't', axis: 'strategy.momentum' })).toBe('knn-vs-strategy.momentum');
    expect(figureStem({ title: 't', axis: 'data.augmentation.crop/size' })).toBe(
      'knn-vs-data.augmentation.crop_size',
    );
    expect(figureStem({ title: 't' })).toBe('knn-vs-k');
    const old = reportMeta({ axis: 'optim.lr', x: 'K (negatives per query)' }, 'dir');
    expect(xTitle(old)).toBe('optim.lr');
    expect(old.title).toBe('dir');
    expect(xTitle(reportMeta({ axis: 'strategy.momentum', x: 'momentum m' }, 'd'))).toBe(
      'momentum m (strategy.momentum)',
    );
    expect(xTitle(reportMeta({}, 'd'))).toBe('K (negatives per query)');
    expect(svgSize('<svg width="640" height="394" viewBox="0 0 640 394">')).toEqual({
      width: 640,
      height: 394,
    });
  });
});
