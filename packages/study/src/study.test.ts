import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configHash, defaultStudyDir, expandStudy, loadStudy } from './expand.js';
import { csv, markdownTable } from './report.js';
import type { StudyResult } from './results.js';

function writeStudy(dir: string, study: string): string {
  writeFileSync(
    join(dir, 'base.yaml'),
    'name: base\ndata: { trainSubset: 256 }\nmodel: { encoder: convnet, width: 0.25, dim: 16 }\n' +
      'strategy: { name: momentum-queue, queueSize: 64 }\noptim: { batchSize: 32, epochs: 1 }\n' +
      'eval: { knn: { every: 0, testSize: 200 }, baselines: false }\n',
  );
  writeFileSync(join(dir, 'study.yaml'), study);
  return join(dir, 'study.yaml');
}

const twoSeries = `name: tiny
base: base.yaml
set: { optim.lr: 0.01 }
series:
  - label: end-to-end
    set: { strategy: { name: end-to-end } }
    points:
      - { k: 30, set: { optim.batchSize: 16 } }
  - label: momentum-queue
    points:
      - { k: 64 }
      - { k: 128, set: { strategy.queueSize: 128 } }
`;

describe('study expansion', () => {
  it('layers base <- study <- series <- point settings, and a section replaces the whole section', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    const file = writeStudy(dir, twoSeries);
    const runs = expandStudy(loadStudy(file), file, { runsDir: join(dir, 'runs') });
    expect(runs.map((r) => [r.series, r.k])).toEqual([
      ['end-to-end', 30],
      ['momentum-queue', 64],
      ['momentum-queue', 128],
    ]);
    expect(runs[0]!.config.strategy).toEqual({ name: 'end-to-end' }); // no queueSize left over
    expect(runs[0]!.config.optim).toMatchObject({ batchSize: 16, lr: 0.01 });
    expect(runs[2]!.config.strategy).toMatchObject({ name: 'momentum-queue', queueSize: 128 });
    expect(new Set(runs.map((r) => r.id)).size).toBe(3);
    const scaled = expandStudy(loadStudy(file), file, { runsDir: 'x', scale: 3 });
    expect(scaled[1]!.config.optim.epochs).toBe(3);
    expect(scaled[1]!.config.data.trainSubset).toBe(768);
    expect(scaled[1]!.id).not.toBe(runs[1]!.id);
    // where a run is stored and tracked does not change what a configuration computes
    const tracking = {
      dir: 'elsewhere',
      logEvery: 20,
      uri: 'http://h:1',
      experiment: 'e',
      uploadWait: 0,
      uploadEvery: 1,
    };
    expect(configHash({ ...runs[1]!.config, tracking })).toBe(runs[1]!.id);
  });

  it('names the series and the field of a bad setting', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    const file = writeStudy(
      dir,
      twoSeries.replace('optim.batchSize: 16', 'optim.batchSize: 16, data.trainsubset: 8'),
    );
    expect(() => expandStudy(loadStudy(file), file, { runsDir: 'x' })).toThrow(
      /series 'end-to-end', k = 30.*data.trainsubset/s,
    );
    const empty = writeStudy(dir, 'name: e\nbase: base.yaml\nseries: []\n');
    expect(() => loadStudy(empty)).toThrow(/series.*at least one series/s);
  });
});

describe('study report', () => {
  const results: StudyResult[] = [
    {
      id: 'a',
      series: 'momentum-queue',
      k: 256,
      knn: 0.8123,
      knnRandomInit: 0.74,
      knnRawPixels: 0.82,
      finalLoss: 5,
      imgPerSec: 200,
      wallSeconds: 60,
      steps: 10,
      epochs: 1,
      runPath: '/r/a',
    },
    {
      id: 'b',
      series: 'momentum-queue',
      k: 1024,
      knn: 0.82,
      finalLoss: 5,
      imgPerSec: 200,
      wallSeconds: 60,
      steps: 10,
      epochs: 1,
      runPath: '/r/b',
    },
    {
      id: 'c',
      series: 'end-to-end',
      k: 254,
      knn: 0.79,
      finalLoss: 5,
      imgPerSec: 150,
      wallSeconds: 90,
      steps: 10,
      epochs: 1,
      runPath: '/r,c',
    },
  ];

  it('tabulates mechanism x K with gaps marked', () => {
    const md = markdownTable(results, { title: 'Mechanisms' });
    expect(md).toContain('| series | K = 254 | K = 256 | K = 1024 |');
    expect(md).toContain('| momentum-queue | - | 81.23 | 82.00 |');
    expect(md).toContain('| end-to-end | 79.00 | - | - |');
    expect(md).toContain('random-init encoder 74.00%, raw pixels 82.00%');
  });

  it('writes a CSV with one row per run, quoting where needed', () => {
    const lines = csv(results).trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^series,k,xLabel,seed,knn,/);
    expect(lines[3]).toContain('"/r,c"');
    // an axes study's x column is its swept field
    expect(csv(results, 'strategy.momentum').split('\n')[0]).toMatch(
      /^series,strategy\.momentum,xLabel,seed,knn,/,
    );
  });
});

describe('axes studies: grid, zip, seeds', () => {
  const head = `name: ax\nbase: base.yaml\n`;

  it('a grid sweeps the axis; other grid fields make series; seeds repeat each configuration', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    const file = writeStudy(
      dir,
      `${head}axis: strategy.momentum\ngrid:\n  strategy.momentum: [0, 0.99]\n  loss.temperature: [0.1, 0.2]\nseeds: [0, 1]\n`,
    );
    const runs = expandStudy(loadStudy(file), file, { runsDir: 'x' });
    expect(runs).toHaveLength(8);
    expect(new Set(runs.map((r) => r.series))).toEqual(
      new Set(['loss.temperature=0.1', 'loss.temperature=0.2']),
    );
    const first = runs.filter((r) => r.series === 'loss.temperature=0.2' && r.k === 0.99);
    expect(first.map((r) => r.seed)).toEqual([0, 1]);
    expect(first.map((r) => r.config.seed)).toEqual([0, 1]);
    expect(first[0]!.config.strategy).toMatchObject({ momentum: 0.99 });
    expect(first[0]!.config.loss.temperature).toBe(0.2);
    expect(first[0]!.xLabel).toBe('0.99');
    expect(new Set(runs.map((r) => r.id)).size).toBe(8);
    // child runs are named after the swept field, not 'k'; ids stay those of the 'k' names
    expect(first.map((r) => r.config.name)).toEqual([
      'ax-loss.temperature_0.2-strategy.momentum_0.99-s0',
      'ax-loss.temperature_0.2-strategy.momentum_0.99-s1',
    ]);
    expect(first[0]!.id).toBe(
      configHash({ ...first[0]!.config, name: 'ax-loss.temperature_0.2-k0.99-s0' }),
    );
  });

  it('seeds keeps the runs of those seeds with the ids they have in the whole study', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    const file = writeStudy(
      dir,
      `${head}axis: strategy.momentum\ngrid:\n  strategy.momentum: [0, 0.99]\nseeds: [0, 1, 2]\n`,
    );
    const all = expandStudy(loadStudy(file), file, { runsDir: 'x' });
    const some = expandStudy(loadStudy(file), file, { runsDir: 'x', seeds: [2, 0] });
    expect(some.map((r) => [r.k, r.seed])).toEqual([
      [0, 0],
      [0, 2],
      [0.99, 0],
      [0.99, 2],
    ]);
    const byId = new Map(all.map((r) => [r.id, r]));
    for (const r of some) expect(byId.get(r.id)?.config).toEqual(r.config);
    expect(() => expandStudy(loadStudy(file), file, { runsDir: 'x', seeds: [1, 3, 4] })).toThrow(
      /--seeds 3,4: not among the study's seeds \(0, 1, 2\)/,
    );
    expect(defaultStudyDir('ax', 1)).toBe(join('runs', 'studies', 'ax'));
    expect(defaultStudyDir('ax', 3)).toBe(join('runs', 'studies', 'ax-x3'));
  });

  it('zip varies fields together, one run per row', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    const file = writeStudy(
      dir,
      `${head}axis: optim.batchSize\nzip:\n  optim.batchSize: [16, 32]\n  optim.lr: [0.015, 0.03]\n`,
    );
    const runs = expandStudy(loadStudy(file), file, { runsDir: 'x' });
    expect(runs.map((r) => [r.k, r.config.optim.batchSize, r.config.optim.lr])).toEqual([
      [16, 16, 0.015],
      [32, 32, 0.03],
    ]);
  });

  it('refuses an empty study, a missing axis, unequal zips and an unknown field (with the nearest)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    expect(() => loadStudy(writeStudy(dir, head))).toThrow(/empty study/);
    expect(() => loadStudy(writeStudy(dir, `${head}grid:\n  optim.lr: [0.1]\n`))).toThrow(
      /name the x-axis field, one of: optim.lr/,
    );
    expect(() => loadStudy(writeStudy(dir, `${head}grid:\n  optim.lr: []\n`))).toThrow(
      /at least one value/,
    );
    expect(() =>
      loadStudy(
        writeStudy(
          dir,
          `${head}axis: optim.lr\nzip:\n  optim.lr: [0.1, 0.2]\n  optim.momentum: [0.9]\n`,
        ),
      ),
    ).toThrow(/same length/);
    const typo = writeStudy(
      dir,
      `${head}axis: data.trainSubsett\ngrid:\n  data.trainSubsett: [8]\n`,
    );
    expect(() => expandStudy(loadStudy(typo), typo, { runsDir: 'x' })).toThrow(
      /did you mean 'trainSubset'/,
    );
  });

  it('reports mean ± std over seeds', () => {
    const r = (seed: number, knn: number): StudyResult => ({
      id: `r${seed}`,
      series: 's',
      k: 0.99,
      xLabel: '0.99',
      seed,
      knn,
      finalLoss: 1,
      imgPerSec: 1,
      wallSeconds: 1,
      steps: 1,
      epochs: 1,
      runPath: '',
    });
    const table = markdownTable([r(0, 0.8), r(1, 0.82)], {
      title: 'T',
      axis: 'strategy.momentum',
    });
    expect(table).toContain('| s | 81.00 ± 1.41 |');
    expect(table).toContain('mean ± std over 2 seeds');
  });
});
