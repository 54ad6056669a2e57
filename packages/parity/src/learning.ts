import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  parseExperiment,
  writeFileAtomic,
  type ExperimentInput,
  type Plugin,
} from '@contrast/core';
import { fashionMnistDir } from '@contrast/data';
import { createCatalog, runExperiment } from '@contrast/trainer';
import { runPython } from './python.js';

/**
 * The learning-parity recipe (the MoCo CIFAR demo at batch 256 on Fashion-MNIST):
 * ResNet-18, CIFAR stem, width 0.5, fc -> 128, plain BN; K 4096, m 0.99, tau 0.1;
 * SGD lr 0.03, momentum 0.9, wd 5e-4, cosine over 5 epochs, stopped after 2;
 * crop 0.2-1, flip, brightness / contrast 0.4 with p 0.8; kNN k 200, t 0.1.
 */
export const LEARNING_RECIPE = {
  width: 0.5,
  dim: 128,
  queue: 4096,
  momentum: 0.99,
  temperature: 0.1,
  batch: 256,
  lr: 0.03,
  weightDecay: 5e-4,
  epochs: 5,
  stopAfter: 2,
  augmentation: {
    scale: [0.2, 1] as [number, number],
    flip: 0.5,
    brightness: 0.4,
    contrast: 0.4,
    p: 0.8,
  },
  knn: { k: 200, t: 0.1 },
  mean: 0.286,
  std: 0.353,
};

/** One side's result for one seed: kNN and the mean loss of the last 50 steps, per epoch. */
export interface LearningRun {
  side: 'contrast' | 'pytorch';
  seed: number;
  epochs: { epoch: number; knn: number; loss: number }[];
  seconds: number;
}

/** The recipe as a Contrast experiment. */
export function learningExperiment(seed: number): ExperimentInput {
  const r = LEARNING_RECIPE;
  const a = r.augmentation;
  return {
    name: `parity-learning-seed${seed}`,
    seed,
    data: {
      dataset: 'fashion-mnist',
      augmentation: {
        crop: { scale: a.scale },
        flip: a.flip,
        jitter: { brightness: a.brightness, contrast: a.contrast, p: a.p },
      },
    },
    model: { encoder: 'resnet18', stem: 'cifar', width: r.width, dim: r.dim, head: 'linear' },
    strategy: { name: 'momentum-queue', queueSize: r.queue, momentum: r.momentum },
    loss: { temperature: r.temperature },
    optim: {
      batchSize: r.batch,
      epochs: r.epochs,
      lr: r.lr,
      momentum: 0.9,
      weightDecay: r.weightDecay,
      schedule: 'cosine',
    },
    eval: { knn: { k: r.knn.k, t: r.knn.t, every: 1 }, baselines: false, alignUniform: 0 },
    checkpoint: { keep: 1 },
  };
}

/** Mean of the last 50 logged losses of each epoch in a run's metrics.jsonl. */
function lastLosses(runPath: string): Map<number, number> {
  const byEpoch = new Map<number, number[]>();
  for (const line of readFileSync(join(runPath, 'metrics.jsonl'), 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const m = JSON.parse(line) as { epoch: number; loss?: number };
    if (m.loss === undefined) continue;
    byEpoch.set(m.epoch, [...(byEpoch.get(m.epoch) ?? []), m.loss]);
  }
  return new Map(
    [...byEpoch].map(([e, l]) => [
      e + 1,
      l.slice(-50).reduce((a, b) => a + b, 0) / Math.min(50, l.length),
    ]),
  );
}

/** Contrast's side for one seed: `contrast train` of the recipe, stopped after `stopAfter` epochs. */
export async function runContrastLearning(
  seed: number,
  dir: string,
  plugins: Plugin[],
): Promise<LearningRun> {
  const config = parseExperiment(learningExperiment(seed));
  config.tracking.dir = join(dir, 'runs');
  const stepsPerEpoch = Math.floor(60000 / LEARNING_RECIPE.batch);
  let batches = 0;
  const t0 = performance.now();
  const { runPath, result } = await runExperiment(config, createCatalog(plugins), {
    progress: false,
    // keep the 5-epoch schedule, stop after 2: polled before each batch
    shouldStop: () => ++batches > LEARNING_RECIPE.stopAfter * stepsPerEpoch,
  });
  const losses = lastLosses(runPath);
  const run: LearningRun = {
    side: 'contrast',
    seed,
    epochs: result.knnPerEpoch.map((k) => ({
      epoch: k.epoch,
      knn: k.accuracy,
      loss: losses.get(k.epoch)!,
    })),
    seconds: (performance.now() - t0) / 1000,
  };
  writeFileAtomic(
    join(dir, `contrast-seed${seed}.json`),
    `${JSON.stringify({ ...run, runPath }, null, 1)}\n`,
  );
  return run;
}

/** PyTorch's side for one seed (python/learn.py). */
export function runTorchLearning(seed: number, dir: string, log: (l: string) => void): LearningRun {
  const out = join(dir, `pytorch-seed${seed}.json`);
  mkdirSync(dir, { recursive: true });
  runPython(
    'learn.py',
    [JSON.stringify({ ...LEARNING_RECIPE, seed, out, root: fashionMnistDir() })],
    log,
  );
  const r = JSON.parse(readFileSync(out, 'utf8')) as Omit<LearningRun, 'side'>;
  return { ...r, side: 'pytorch' };
}

/** Every run recorded in `dir`, both sides. */
export function readLearningRuns(dir: string): LearningRun[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /^(contrast|pytorch)-seed\d+\.json$/.test(f))
    .map((f) => {
      const r = JSON.parse(readFileSync(join(dir, f), 'utf8')) as LearningRun;
      return { ...r, side: f.startsWith('contrast') ? 'contrast' : 'pytorch' };
    });
}

/**
 * The learning-parity report: per epoch and side, mean +- std over seeds of kNN
 * and loss, and Welch's two-sample t-test between the sides (scipy, in
 * python/learning_report.py). Writes `dir`/report.{md,json}.
 */
export function learningReport(dir: string, log: (l: string) => void): string {
  const runs = readLearningRuns(dir);
  if (runs.length === 0)
    throw new Error(
      `no learning runs in ${dir}: run 'pnpm parity learning --side ... --seed ...' first`,
    );
  writeFileAtomic(join(dir, 'runs.json'), `${JSON.stringify(runs, null, 1)}\n`);
  runPython('learning_report.py', [dir], log);
  return readFileSync(join(dir, 'report.md'), 'utf8');
}
