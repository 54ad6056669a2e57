import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinPlugins, runStudyParallel } from '@contrast/cli';
import { readResults, runStudy } from '@contrast/study';
import { createCatalog } from '@contrast/trainer';

/** Two methods, each from its own base (256 Fashion-MNIST images, a quarter-width ConvNet, 1 epoch). */
function writeStudy(dir: string, evaluate: string): string {
  const base = (strategy: string) =>
    'name: base\ndata: { trainSubset: 256 }\nmodel: { encoder: convnet, width: 0.25, dim: 16 }\n' +
    `strategy: ${strategy}\noptim: { batchSize: 32, epochs: 1, lr: 0.01 }\n` +
    'eval: { knn: { every: 0, testSize: 200 }, baselines: false, alignUniform: 0 }\n';
  writeFileSync(join(dir, 'moco.yaml'), base('{ name: momentum-queue, queueSize: 64 }'));
  writeFileSync(join(dir, 'e2e.yaml'), base('{ name: end-to-end }'));
  writeFileSync(
    join(dir, 'methods.yaml'),
    `name: methods\nlegend: method\n${evaluate}series:\n` +
      '  - { label: MoCo, base: moco.yaml }\n  - { label: end-to-end, base: e2e.yaml }\n',
  );
  return join(dir, 'methods.yaml');
}

describe('a method table with the linear probe', () => {
  it('adds the probe to a finished study without training again, and a resumed study does not probe again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-methods-'));
    const out = join(dir, 'out');
    const catalog = createCatalog(builtinPlugins());
    const lines: string[] = [];
    const run = (file: string) =>
      runStudy(file, catalog, { out, progress: false, log: (l) => lines.push(l) });

    // kNN only
    const knnOnly = await run(writeStudy(dir, ''));
    expect(knnOnly.results.map((r) => [r.series, r.linear])).toEqual([
      ['MoCo', undefined],
      ['end-to-end', undefined],
    ]);

    // the same study asking for the probe: the runs' training stands, only the probe runs
    lines.length = 0;
    const file = writeStudy(dir, 'evaluate: { linear: true, epochs: 2, trainSize: 512 }\n');
    const probed = await run(file);
    expect(lines.filter((l) => l.includes('already finished its'))).toHaveLength(2);
    expect(lines.filter((l) => l.startsWith('linear probe: 512 x '))).toHaveLength(2);
    expect(probed.results.map((r) => r.steps)).toEqual(knnOnly.results.map((r) => r.steps));
    expect(probed.results.map((r) => r.knn)).toEqual(knnOnly.results.map((r) => r.knn));
    for (const r of probed.results) {
      expect(r.linear).toBeGreaterThan(0.1); // 10 classes: chance is 0.1
      expect(r.linear).toBeLessThanOrEqual(1);
      expect(r).toMatchObject({ linearEpochs: 2, linearTrainSize: 512, linearLrSelected: true });
    }
    const jsonl = () => readFileSync(join(out, 'results.jsonl'), 'utf8').trim().split('\n');
    expect(jsonl()).toHaveLength(2); // lines replaced, not appended

    const table = readFileSync(join(out, 'table.md'), 'utf8');
    const cell = (x: number) => (100 * x).toFixed(2);
    const [moco, e2e] = probed.results;
    expect(table).toContain(`| MoCo | ${cell(moco!.knn)} | ${cell(moco!.linear!)} |`);
    expect(table).toContain(`| end-to-end | ${cell(e2e!.knn)} | ${cell(e2e!.linear!)} |`);
    expect(table).toMatch(/Linear: linear probe .* 512 training images.* 2 epochs/);
    for (const ext of ['png', 'svg', 'pdf']) {
      expect(existsSync(join(out, `accuracy-by-method.${ext}`))).toBe(true);
    }

    // stopped after the second run's probe was written, before its result was recorded
    const probeFile = join(e2e!.runPath, 'eval', 'linear-subset.json');
    const written = statSync(probeFile).mtimeMs;
    writeFileSync(join(out, 'results.jsonl'), `${jsonl()[0]}\n`);
    lines.length = 0;
    const resumed = await run(file);
    expect(lines.filter((l) => l.includes('already done'))).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith('linear probe already in'))).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith('linear probe: '))).toHaveLength(0);
    expect(statSync(probeFile).mtimeMs).toBe(written);
    expect(resumed.results.map((r) => r.linear)).toEqual(probed.results.map((r) => r.linear));
    expect(readResults(out)).toHaveLength(2);
  });

  it('--parallel 2: each child process runs its probe after training, and the result lands in results.jsonl', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-methods-'));
    const file = writeStudy(dir, 'evaluate: { linear: true, epochs: 2, trainSize: 512 }\n');
    const out = join(dir, 'out');
    const lines: string[] = [];
    const par = await runStudyParallel(file, createCatalog(builtinPlugins()), {
      parallel: 2,
      out,
      log: (l) => lines.push(l),
    });
    expect(par.failed).toEqual([]);
    expect(lines.filter((l) => /: kNN \d+\.\d\d%, linear \d+\.\d\d%$/.test(l))).toHaveLength(2);
    const recorded = readResults(out);
    expect(recorded.map((r) => r.series).sort()).toEqual(['MoCo', 'end-to-end']);
    for (const r of recorded) {
      expect(r.linear).toBeGreaterThan(0.1);
      expect(r).toMatchObject({ linearEpochs: 2, linearTrainSize: 512, linearSubset: true });
      expect(existsSync(join(r.runPath, 'eval', 'linear-subset.json'))).toBe(true);
    }
  });
});
