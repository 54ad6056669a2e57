import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkNames, loadExperiment } from '@contrast/core';
import { builtinPlugins } from '@contrast/cli';
import { expandStudy, loadStudy } from '@contrast/study';
import { createCatalog, runExperiment } from '@contrast/trainer';
import { cli } from './cli.js';

const here = import.meta.dirname;
const yamls = readdirSync(here).filter((f) => f.endsWith('.yaml'));

describe('experiment files', () => {
  it("the recipes encode the papers' settings", () => {
    const load = (f: string) => loadExperiment(join(here, f));
    const v1 = load('moco-v1.yaml');
    expect([v1.strategy.queueSize, v1.strategy.momentum, v1.loss.temperature]).toEqual([
      65536, 0.999, 0.07,
    ]);
    expect([v1.optim.schedule, v1.optim.milestones, v1.data.augmentation.jitter.p]).toEqual([
      'step',
      [120, 160],
      1,
    ]);
    const v2 = load('moco-v2.yaml');
    expect([v2.model.head, v2.loss.temperature, v2.data.augmentation.blur.p]).toEqual([
      'mlp',
      0.2,
      0.5,
    ]);
    const demo = load('moco-cifar10.yaml');
    expect([
      demo.model.bnSplits,
      demo.optim.batchSize,
      demo.optim.lr,
      demo.data.augmentation.grayscale,
    ]).toEqual([8, 512, 0.06, 0.2]);
    const v3 = load('moco-v3-cifar10.yaml');
    expect([v3.strategy.name, v3.loss.symmetric, v3.optim.optimizer]).toEqual([
      'moco-v3',
      true,
      'lars',
    ]);
  });

  it.each(yamls)('%s is valid and names only known parts', (file) => {
    const config = loadExperiment(join(here, file));
    expect(() => checkNames(config, createCatalog(builtinPlugins()))).not.toThrow();
  });

  it.each(readdirSync(join(here, 'studies')))('built-in study %s expands to valid runs', (f) => {
    const file = join(here, 'studies', f);
    const runs = expandStudy(loadStudy(file), file, { runsDir: 'unused' });
    expect(runs.length).toBeGreaterThanOrEqual(4);
    const catalog = createCatalog(builtinPlugins());
    for (const r of runs) expect(() => checkNames(r.config, catalog)).not.toThrow();
  });

  it('the mechanisms study expands to 9 valid runs over the three strategies', () => {
    const file = join(here, 'mechanisms', 'study.yaml');
    const runs = expandStudy(loadStudy(file), file, { runsDir: 'unused' });
    expect(runs).toHaveLength(9);
    expect(new Set(runs.map((r) => r.config.strategy.name))).toEqual(
      new Set(['end-to-end', 'memory-bank', 'momentum-queue']),
    );
    const catalog = createCatalog(builtinPlugins());
    runs.forEach((r) => expect(() => checkNames(r.config, catalog)).not.toThrow());
    // a fair comparison: everything but the mechanism, K and the batch-tied lr is shared
    const shared = (r: (typeof runs)[number]) => [
      r.config.model,
      r.config.data,
      r.config.optim.epochs,
      r.config.seed,
      r.config.loss,
    ];
    runs.forEach((r) => expect(shared(r)).toEqual(shared(runs[0]!)));
  });
});

describe('bad input through the CLI: coded error, non-zero exit, no run directory', () => {
  const runs = mkdtempSync(join(tmpdir(), 'contrast-bad-'));
  const base = join(here, 'moco-fmnist.yaml');
  const cases: [string, string[], RegExp][] = [
    [
      'unknown strategy',
      ['--set', 'strategy.name=momentum-queu'],
      new RegExp(
        `CONTRAST_UNKNOWN_NAME.*Known: ${builtinPlugins()
          .map((p) => p.name)
          .sort()
          .join(', ')}.*did you mean 'momentum-queue'`,
        's',
      ),
    ],
    [
      'unknown encoder',
      ['--set', 'model.encoder=resnet19'],
      /unknown encoder 'resnet19'.*resnet18/s,
    ],
    [
      'unknown loss',
      ['--set', 'loss.name=infonse'],
      /unknown loss 'infonse'.*did you mean 'infonce'/s,
    ],
    [
      'unknown loss option',
      ['--set', 'loss.temprature=0.1'],
      /CONTRAST_CONFIG.*loss.temprature.*did you mean 'temperature'/s,
    ],
    ['wrong type', ['--set', 'optim.lr=fast'], /CONTRAST_CONFIG.*optim.lr.*use a number/s],
    ['zero batch', ['--set', 'optim.batchSize=0'], /optim.batchSize.*>= 1|optim.batchSize.*> 0/s],
    ['negative queue', ['--set', 'strategy.queueSize=-5'], /strategy.queueSize/],
    [
      'missing dataset',
      ['--set', 'data.root=/nonexistent/fmnist'],
      /CONTRAST_DATASET.*apt-get install -y dataset-fashion-mnist/s,
    ],
    [
      'unwritable run dir',
      ['--set', `tracking.dir=${join(base, 'sub')}`],
      /CONTRAST_RUN_DIR.*tracking.dir/s,
    ],
  ];
  it.each(cases)('%s', async (_name, extra, message) => {
    const dir = extra.some((a) => a.startsWith('tracking.dir'))
      ? []
      : ['--set', `tracking.dir=${runs}`];
    const { code, stderr } = await cli(['train', base, ...dir, ...extra]);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(readdirSync(runs)).toEqual([]);
  });

  it('a missing experiment file', async () => {
    const { code, stderr } = await cli(['train', join(here, 'nope.yaml')]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/cannot read .*nope.yaml: ENOENT/);
  });
});

describe('MoCo on real Fashion-MNIST, short run', () => {
  it('loss falls after the queue fills and kNN beats the random-init encoder', async () => {
    const runs = mkdtempSync(join(tmpdir(), 'contrast-e2e-'));
    // The default experiment, shrunk: 10240 training images, 3 epochs, K = 1024 (4 batches).
    const config = loadExperiment(join(here, 'moco-fmnist.yaml'), [
      `tracking.dir=${runs}`,
      'data.trainSubset=10240',
      'strategy.queueSize=1024',
      'optim.epochs=3',
      'eval.knn.every=0',
      'eval.knn.testSize=2000',
    ]);
    const { runPath, result } = await runExperiment(config, createCatalog(builtinPlugins()), {
      progress: false,
      log: () => {},
    });

    const steps = readFileSync(join(runPath, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((r) => r.loss !== undefined);
    expect(steps).toHaveLength(result.steps);
    expect(result.steps).toBe(3 * 40);
    // Chance level once the queue holds real keys is about log(K + 1) = 6.93.
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    const early = mean(steps.slice(4, 10).map((r) => r.loss));
    const late = mean(steps.slice(-6).map((r) => r.loss));
    console.log(
      `[moco short run] loss ${early.toFixed(3)} -> ${late.toFixed(3)}; kNN ${result.knn.trained} vs random init ${result.knn.randomInit}`,
    );
    expect(early).toBeGreaterThan(5);
    expect(late).toBeLessThan(early - 0.5);

    // 2 points on 2000 test images is 40 images: well above run-to-run noise at a fixed seed.
    expect(result.knn.trained).toBeGreaterThan(result.knn.randomInit! + 0.02);
    expect(new Set(result.tensorsAfterStep.slice(1)).size).toBe(1);
    const summary = JSON.parse(readFileSync(join(runPath, 'summary.json'), 'utf8'));
    expect(summary.status).toBe('finished');
    expect(existsSync(join(runPath, 'state', 'final.bin'))).toBe(true);
  }, 600_000);
});
