import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinPlugins, childThreadEnv, runStudyParallel } from '@contrast/cli';
import { runCurves, runStudy } from '@contrast/study';
import { createCatalog } from '@contrast/trainer';

/** A tiny study over two mechanisms on real Fashion-MNIST (256 images, ConvNet). */
function writeStudy(dir: string): string {
  writeFileSync(
    join(dir, 'base.yaml'),
    'name: base\ndata: { trainSubset: 256 }\nmodel: { encoder: convnet, width: 0.25, dim: 16 }\n' +
      'strategy: { name: momentum-queue, queueSize: 64 }\noptim: { batchSize: 32, epochs: 1, lr: 0.01 }\n' +
      'eval: { knn: { every: 0, testSize: 200 }, baselines: false }\n',
  );
  writeFileSync(
    join(dir, 'study.yaml'),
    `name: tiny
base: base.yaml
series:
  - label: end-to-end
    set: { strategy: { name: end-to-end } }
    points: [{ k: 30, set: { optim.batchSize: 16 } }]
  - label: momentum-queue
    points: [{ k: 64 }, { k: 128, set: { strategy.queueSize: 128 } }]
`,
  );
  return join(dir, 'study.yaml');
}

describe('running a study', () => {
  it('runs every configuration once, skips finished ones on a re-run, and reports', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    const file = writeStudy(dir);
    const catalog = () => createCatalog(builtinPlugins());
    const lines: string[] = [];
    const first = await runStudy(file, catalog(), {
      out: join(dir, 'out'),
      progress: false,
      log: (l) => lines.push(l),
    });
    expect(first.results.map((r) => r.series)).toEqual([
      'end-to-end',
      'momentum-queue',
      'momentum-queue',
    ]);
    first.results.forEach((r) => expect(r.knn).toBeGreaterThan(0.2));
    const again = await runStudy(file, catalog(), {
      out: join(dir, 'out'),
      progress: false,
      log: (l) => lines.push(l),
    });
    expect(lines.filter((l) => l.includes('already done'))).toHaveLength(3);
    expect(again.results).toEqual(first.results);
    expect(
      readFileSync(join(dir, 'out', 'results.jsonl'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(3);
    expect(readFileSync(join(dir, 'out', 'table.md'), 'utf8')).toContain('| momentum-queue |');
  });

  it('an axes study with seeds: mean ± std in the table, alignment / uniformity columns, a linear plot', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    writeStudy(dir);
    writeFileSync(
      join(dir, 'axes.yaml'),
      'name: axes\nbase: base.yaml\nx: momentum m\nxScale: linear\naxis: strategy.momentum\n' +
        'grid:\n  strategy.momentum: [0, 0.99]\nseeds: [0, 1]\nset: { eval.baselines: true }\n',
    );
    const run = async (seeds?: number[]) => {
      const lines: string[] = [];
      const r = await runStudy(join(dir, 'axes.yaml'), createCatalog(builtinPlugins()), {
        out: join(dir, 'axes-out'),
        progress: false,
        log: (l) => lines.push(l),
        ...(seeds ? { seeds } : {}),
      });
      return { ...r, skipped: lines.filter((l) => l.includes('already done')).length };
    };
    // --seeds 1 first: its two runs; then the whole study trains seed 0's alone
    const some = await run([1]);
    expect(some.results.map((r) => r.seed)).toEqual([1, 1]);
    const out = await run();
    expect(out.skipped).toBe(2);
    expect(out.results).toHaveLength(4);
    expect(new Set(out.results.map((r) => r.seed))).toEqual(new Set([0, 1]));
    // a seed subset of a finished study trains nothing and reports every seed
    const again = await run([0]);
    expect(again.skipped).toBe(2);
    expect(again.results).toHaveLength(4);
    const table = readFileSync(join(dir, 'axes-out', 'table.md'), 'utf8');
    expect(table).toContain('| series | 0 | 0.99 |');
    expect(table).toMatch(/\| axes \| \d+\.\d\d ± \d+\.\d\d \| \d+\.\d\d ± \d+\.\d\d \|/);
    expect(table).toContain('Alignment / uniformity');
    const png = readFileSync(join(dir, 'axes-out', 'knn-vs-strategy.momentum.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    // per-run curves: every step's loss of every run, and the per-epoch kNN
    const curves = runCurves(out.results);
    expect(curves.loss).toHaveLength(out.results.reduce((n, r) => n + r.steps, 0));
    expect(new Set(curves.loss.map((p) => p.run)).size).toBe(4);
    const curvesPng = readFileSync(join(dir, 'axes-out', 'curves.png'));
    expect(curvesPng.subarray(1, 4).toString()).toBe('PNG');
    expect(curvesPng.length).toBeGreaterThan(10_000);
    // the kNN baselines were computed once per seed (random init) and once in all (raw
    // pixels), in the study's baselines/ folder, and read by the other runs
    const cached = readdirSync(join(dir, 'axes-out', 'baselines')).filter((f) =>
      f.endsWith('.json'),
    );
    expect(cached).toHaveLength(3);
    expect(new Set(out.results.map((r) => r.knnRawPixels)).size).toBe(1);
    for (const seed of [0, 1]) {
      const init = out.results.filter((r) => r.seed === seed).map((r) => r.knnRandomInit);
      expect(init).toHaveLength(2);
      expect(init[0]).toBeGreaterThan(0);
      expect(init[1]).toBe(init[0]);
    }
  });

  it('--parallel 2 runs configurations in child processes with the same results as in sequence', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    const file = writeStudy(dir);
    const catalog = () => createCatalog(builtinPlugins());
    const sequential = await runStudy(file, catalog(), {
      out: join(dir, 'seq'),
      progress: false,
      log: () => {},
    });
    // Children get cores / N TensorFlow threads by default, and a different thread
    // count changes float rounding; pinned to this process's count, the results are exact.
    const pinned = process.env.TF_NUM_INTRAOP_THREADS;
    process.env.TF_NUM_INTRAOP_THREADS = String(availableParallelism());
    const parallel = await runStudyParallel(file, catalog(), {
      parallel: 2,
      out: join(dir, 'par'),
      log: () => {},
    }).finally(() => {
      if (pinned === undefined) delete process.env.TF_NUM_INTRAOP_THREADS;
      else process.env.TF_NUM_INTRAOP_THREADS = pinned;
    });
    expect(parallel.failed).toEqual([]);
    const knn = (rs: { id: string; knn: number }[]) =>
      Object.fromEntries(rs.map((r) => [r.id, r.knn]));
    expect(knn(parallel.results)).toEqual(knn(sequential.results));
  });

  it('--parallel N gives each child cores / N TensorFlow threads unless the user chose', () => {
    expect(childThreadEnv(2, {}, 2)).toMatchObject({
      TF_NUM_INTRAOP_THREADS: '1',
      TF_NUM_INTEROP_THREADS: '1',
    });
    expect(childThreadEnv(2, {}, 8).TF_NUM_INTRAOP_THREADS).toBe('4');
    expect(childThreadEnv(3, {}, 2).TF_NUM_INTRAOP_THREADS).toBe('1');
    expect(childThreadEnv(2, { TF_NUM_INTRAOP_THREADS: '2', HOME: '/h' }, 2)).toMatchObject({
      TF_NUM_INTRAOP_THREADS: '2',
      HOME: '/h',
    });
  });

  it('refuses a strategy axis that names no field, before anything trains', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    writeStudy(dir);
    writeFileSync(
      join(dir, 'typo.yaml'),
      'name: typo\nbase: base.yaml\naxis: strategy.momentun\ngrid:\n  strategy.momentun: [0.9]\n',
    );
    const e = await runStudy(join(dir, 'typo.yaml'), createCatalog(builtinPlugins()), {
      out: join(dir, 'typo-out'),
      progress: false,
      log: () => {},
    }).catch((x: unknown) => x);
    expect((e as Error).message).toContain("did you mean 'momentum'");
    expect(existsSync(join(dir, 'typo-out', 'runs'))).toBe(false);
  });

  it('refuses a loss axis that names no option of the loss, before anything trains', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    writeStudy(dir);
    writeFileSync(
      join(dir, 'loss.yaml'),
      'name: loss\nbase: base.yaml\naxis: loss.gamma\ngrid:\n  loss.gamma: [0.005]\n',
    );
    const e = await runStudy(join(dir, 'loss.yaml'), createCatalog(builtinPlugins()), {
      out: join(dir, 'loss-out'),
      progress: false,
      log: () => {},
    }).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/loss\.gamma.*is not a field of loss 'infonce'/);
    expect(existsSync(join(dir, 'loss-out', 'runs'))).toBe(false);
  });
});
