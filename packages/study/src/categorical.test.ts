import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expandStudy, loadStudy, studyBases } from './expand.js';
import { reportMeta } from './labels.js';
import { categoryPoints, categoryTable, csv, reportStudyFolder, writeReport } from './report.js';
import { isDone, probeMatches, readResults, recordResult, type StudyResult } from './results.js';
import { recordedProbe } from './run.js';

const tinyBase = (strategy: string) =>
  'name: base\ndata: { trainSubset: 256 }\nmodel: { encoder: convnet, width: 0.25, dim: 16 }\n' +
  `strategy: { name: ${strategy} }\noptim: { batchSize: 32, epochs: 1 }\n` +
  'eval: { knn: { every: 0, testSize: 200 }, baselines: false }\n';

function writeStudy(dir: string, study: string): string {
  writeFileSync(join(dir, 'moco.yaml'), tinyBase('momentum-queue'));
  writeFileSync(join(dir, 'byol.yaml'), tinyBase('byol'));
  writeFileSync(join(dir, 'study.yaml'), study);
  return join(dir, 'study.yaml');
}

const methods = `name: methods
legend: method
set: { optim.epochs: 2 }
seeds: [0, 1]
evaluate: { linear: true, epochs: 5 }
series:
  - { label: MoCo, base: moco.yaml, set: { strategy.queueSize: 64 } }
  - { label: BYOL, base: byol.yaml }
`;

const result = (series: string, seed: number, knn: number, linear?: number): StudyResult => ({
  id: `${series}-${seed}`,
  series,
  k: 1,
  seed,
  knn,
  knnRandomInit: 0.5,
  ...(linear !== undefined
    ? { linear, linearLr: 3, linearEpochs: 5, linearTrainSize: 60000, linearLrSelected: true }
    : {}),
  finalLoss: 1,
  imgPerSec: 1000 + 100 * seed,
  wallSeconds: 60 + 60 * seed,
  steps: 8,
  epochs: 2,
  runPath: `/nowhere/${series}-${seed}`,
});

describe('a categorical study (one configuration per series, each with its own base)', () => {
  it('expands each series from its own base under the study settings, named without an x', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-methods-'));
    const file = writeStudy(dir, methods);
    const study = loadStudy(file);
    const runs = expandStudy(study, file, { runsDir: join(dir, 'runs') });
    expect(runs.map((r) => [r.series, r.seed, r.config.name])).toEqual([
      ['MoCo', 0, 'methods-MoCo-s0'],
      ['MoCo', 1, 'methods-MoCo-s1'],
      ['BYOL', 0, 'methods-BYOL-s0'],
      ['BYOL', 1, 'methods-BYOL-s1'],
    ]);
    expect(runs[0]!.config.strategy).toMatchObject({ name: 'momentum-queue', queueSize: 64 });
    expect(runs[2]!.config.strategy.name).toBe('byol');
    runs.forEach((r) => expect(r.config.optim.epochs).toBe(2)); // the study's set over each base
    runs.forEach((r) => expect(r.linear).toEqual({ epochs: 5, trainSize: 0 }));
    expect(new Set(runs.map((r) => r.id)).size).toBe(4);
    expect(studyBases(study, file)).toEqual([join(dir, 'moco.yaml'), join(dir, 'byol.yaml')]);
    expect(reportMeta(study, 'x').categorical).toBe(true);
    // without evaluate.linear no probe rides on the runs
    writeFileSync(file, methods.replace('evaluate: { linear: true, epochs: 5 }\n', ''));
    expect(expandStudy(loadStudy(file), file, { runsDir: 'r' })[0]!.linear).toBeUndefined();
  });

  it("a series that sets a whole section still gets the study's dotted fields of it", () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-methods-'));
    const row = '  - { label: BYOL, base: byol.yaml }';
    const file = writeStudy(
      dir,
      methods.replace(
        row,
        '  - { label: BYOL, base: byol.yaml, set: { optim: { batchSize: 16 } } }',
      ),
    );
    const runs = expandStudy(loadStudy(file), file, { runsDir: join(dir, 'runs') });
    // the row's section replaces the base's optim (batch 16, epochs back to the default)...
    expect(runs[2]!.config.optim.batchSize).toBe(16);
    // ...and the study's optim.epochs still applies over it, as on the other rows
    runs.forEach((r) => expect(r.config.optim.epochs).toBe(2));
  });

  it('refuses a series base that cannot be read, naming the series', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-methods-'));
    const file = writeStudy(dir, methods.replace('base: byol.yaml', 'base: nope.yaml'));
    expect(() => expandStudy(loadStudy(file), file, { runsDir: 'r' })).toThrow(
      expect.objectContaining({
        code: 'CONTRAST_CONFIG',
        message: expect.stringMatching(/series 'BYOL' base.*cannot read .*nope\.yaml/s),
      }),
    );
  });

  it('refuses a series without a base when the study has none, and points in some series only', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-methods-'));
    const noBase = writeStudy(dir, methods.replace(', base: byol.yaml', ''));
    expect(() => loadStudy(noBase)).toThrow(
      expect.objectContaining({
        code: 'CONTRAST_CONFIG',
        message: expect.stringMatching(/base.*no base experiment for series 'BYOL'/s),
      }),
    );
    const mixed = writeStudy(
      dir,
      methods.replace('base: byol.yaml }', 'base: byol.yaml, points: [{ k: 1 }] }'),
    );
    expect(() => loadStudy(mixed)).toThrow(/points in every series .* or in none/);
    const badProbe = writeStudy(dir, methods.replace('epochs: 5', 'epochs: 0'));
    expect(() => loadStudy(badProbe)).toThrow(/evaluate\.epochs/);
  });

  it("re-rendered, orders the table by the study file's series and keeps each cell's newest result", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-methods-'));
    writeFileSync(join(dir, 'study.yaml'), methods);
    // BYOL finished first (a resumed study adds its late rows after the others)
    // and MoCo's row was run again after its configuration changed (a new id, the same cell)
    const stale = { ...result('MoCo', 0, 0.1, 0.1), id: 'MoCo-0-old' };
    for (const r of [stale, result('BYOL', 0, 0.6, 0.75), result('MoCo', 0, 0.7, 0.8)]) {
      recordResult(dir, r);
    }
    await reportStudyFolder(dir);
    const table = readFileSync(join(dir, 'table.md'), 'utf8');
    expect(table.indexOf('| MoCo |')).toBeGreaterThan(0);
    expect(table.indexOf('| MoCo |')).toBeLessThan(table.indexOf('| BYOL |'));
    expect(table).toContain('| MoCo | 70.00 | 80.00 |'); // the newest result of the cell alone
  });

  it('tables kNN and linear per method as mean ± std over seeds, the protocol beside them', () => {
    const results = [
      result('MoCo', 0, 0.7, 0.8),
      result('MoCo', 1, 0.72, 0.82),
      result('BYOL', 0, 0.6, 0.75),
      result('BYOL', 1, 0.64, 0.79),
    ];
    const table = categoryTable(results, { title: 'Methods', legend: 'method', categorical: true });
    // std of (70, 72) = sqrt(2) = 1.41; of (60, 64) = 2.83; img/s mean 1050; wall (1 + 2) / 2 min
    expect(table).toContain(
      '| method | kNN top-1 (%) | linear top-1 (%) | kNN at random init (%) | img/s | wall time (min) |',
    );
    expect(table).toContain('| MoCo | 71.00 ± 1.41 | 81.00 ± 1.41 | 50.00 | 1050 | 1.5 |');
    expect(table).toContain('| BYOL | 62.00 ± 2.83 | 77.00 ± 2.83 | 50.00 | 1050 | 1.5 |');
    expect(table).toMatch(/Linear: linear probe on frozen pooled backbone features/);
    expect(table).toMatch(/60,000 training images.*5 epochs.*lr selected .*\(chosen: 3\)/);
    expect(table).toContain('mean ± std over 2 seeds');
    expect(csv(results).split('\n')[0]).toContain(',linear,linearTop5,linearLr,');
    const points = categoryPoints(results);
    expect(points.map((p) => [p.series, p.metric, p.mean.toFixed(2)])).toEqual([
      ['MoCo', 'kNN', '71.00'],
      ['MoCo', 'linear probe', '81.00'],
      ['BYOL', 'kNN', '62.00'],
      ['BYOL', 'linear probe', '77.00'],
    ]);
    // a study without the probe says so rather than printing an empty column
    const knnOnly = categoryTable([result('MoCo', 0, 0.7)], { title: 'M', categorical: true });
    expect(knnOnly).toContain('| MoCo | 70.00 | - | 50.00 | 1000 | 1.0 |');
    expect(knnOnly).toContain('not run');
  });

  it('writes the table and the accuracy-by-method figure, one dot and error bar per method and evaluation', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-methods-'));
    const results = [
      result('MoCo', 0, 0.7, 0.8),
      result('MoCo', 1, 0.72, 0.82),
      result('BYOL', 0, 0.6, 0.75),
      result('BYOL', 1, 0.64, 0.79),
    ];
    const files = await writeReport(dir, results, {
      title: 'Methods',
      legend: 'method',
      categorical: true,
    });
    for (const ext of ['png', 'svg', 'pdf']) {
      expect(existsSync(join(dir, `accuracy-by-method.${ext}`))).toBe(true);
    }
    expect(files[0]).toBe(join(dir, 'table.md'));
    const svg = readFileSync(join(dir, 'accuracy-by-method.svg'), 'utf8');
    expect(svg.match(/aria-roledescription="errorbar"/g)).toHaveLength(4);
    expect(svg).toContain('linear probe');
    expect(svg).toContain('BYOL');
  });
});

describe('recording results with the linear probe', () => {
  it('replaces the line of a run probed later, and a run without the asked probe is not done', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-methods-'));
    recordResult(dir, result('MoCo', 0, 0.7));
    recordResult(dir, result('BYOL', 0, 0.6));
    const unprobed = new Map(readResults(dir).map((r) => [r.id, r]));
    expect(isDone(unprobed, { id: 'MoCo-0' })).toBe(true);
    const asked = { epochs: 5, trainSize: 0 };
    expect(isDone(unprobed, { id: 'MoCo-0', linear: asked })).toBe(false);
    recordResult(dir, result('MoCo', 0, 0.7, 0.8));
    const lines = readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(readResults(dir).map((r) => [r.series, r.linear])).toEqual([
      ['MoCo', 0.8],
      ['BYOL', undefined],
    ]);
    const probed = new Map(readResults(dir).map((r) => [r.id, r]));
    expect(isDone(probed, { id: 'MoCo-0', linear: asked })).toBe(true);
    // probed, but with other settings than the study now asks for: not done
    expect(isDone(probed, { id: 'MoCo-0', linear: { ...asked, epochs: 20 } })).toBe(false);
  });

  it('matches a recorded probe to the asked settings: epochs, lr choice, training images', () => {
    const full = { ...result('MoCo', 0, 0.7, 0.8), linearSubset: false };
    expect(probeMatches(full, { epochs: 5, trainSize: 0 })).toBe(true);
    expect(probeMatches(full, { epochs: 6, trainSize: 0 })).toBe(false);
    expect(probeMatches(full, { epochs: 5, trainSize: 0, lr: 3 })).toBe(false); // selected, not fixed
    expect(probeMatches(full, { epochs: 5, trainSize: 512 })).toBe(false); // 60,000 > 512
    expect(probeMatches(full, { epochs: 5, trainSize: 60000 })).toBe(true); // the whole split
    expect(probeMatches(full, { epochs: 5, trainSize: 100000 })).toBe(true); // capped at the split
    const fixed = { ...full, linearLrSelected: false };
    expect(probeMatches(fixed, { epochs: 5, trainSize: 0, lr: 3 })).toBe(true);
    expect(probeMatches(fixed, { epochs: 5, trainSize: 0, lr: 1 })).toBe(false);
    const subset = { ...full, linearSubset: true, linearTrainSize: 512 };
    expect(probeMatches(subset, { epochs: 5, trainSize: 512 })).toBe(true);
    expect(probeMatches(subset, { epochs: 5, trainSize: 1024 })).toBe(false);
    expect(probeMatches(subset, { epochs: 5, trainSize: 0 })).toBe(false);
    expect(probeMatches(result('MoCo', 0, 0.7), { epochs: 5, trainSize: 0 })).toBe(false);
    expect(probeMatches(undefined, { epochs: 5, trainSize: 0 })).toBe(false);
  });

  it("reuses a run folder's probe only when it was made with the same settings", () => {
    const run = mkdtempSync(join(tmpdir(), 'contrast-probe-'));
    mkdirSync(join(run, 'eval'));
    const doc = {
      linear_top1_subset: 0.7,
      linear_top5_subset: 0.95,
      linear_lr_subset: 1,
      epochs: 5,
      linear_subset_train_size: 512,
      seconds: 2,
      lr_selection: { protocol: 'selected', candidates: [] },
    };
    writeFileSync(join(run, 'eval', 'linear-subset.json'), JSON.stringify(doc));
    expect(recordedProbe(run, { epochs: 5, trainSize: 512 })).toEqual({
      linear: 0.7,
      linearTop5: 0.95,
      linearLr: 1,
      linearEpochs: 5,
      linearTrainSize: 512,
      linearLrSelected: true,
      linearSubset: true,
      linearSeconds: 2,
    });
    expect(recordedProbe(run, { epochs: 10, trainSize: 512 })).toBeUndefined();
    expect(recordedProbe(run, { epochs: 5, trainSize: 0 })).toBeUndefined();
    expect(recordedProbe(run, { epochs: 5, trainSize: 512, lr: 1 })).toBeUndefined(); // selected, not fixed
  });
});
