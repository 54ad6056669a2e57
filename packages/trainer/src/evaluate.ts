import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  evaluationSplits,
  loadDataset,
  loadExperiment,
  readBundle,
  Rng,
  TrackingError,
  writeFileAtomic,
  type Catalog,
  type DecodedBundle,
  type ExperimentConfig,
  type ImageSplit,
} from '@contrast/core';
import { splitBatch } from '@contrast/data';
import {
  extractFeatures,
  inferenceBatchSize,
  knnOnEncoder,
  LINEAR_PROBE_DEFAULTS,
  linearProbe,
  type LinearProbeOptions,
} from '@contrast/eval';
import { hasMlflowState, MlflowUploader } from '@contrast/tracking';
import { checkpointDir, loadCheckpoint } from './checkpoint.js';
import { requireRunFolder } from './run.js';
import { createSession, type TrainingSession } from './session.js';

export interface EvaluateOptions {
  /** Linear probe settings (MoCo's protocol by default; epochs usually lowered on CPU). */
  probe?: Partial<LinearProbeOptions>;
  /** kNN settings (default: the run's k and t, the whole train split as bank, the whole test split). */
  knn?: { k?: number; t?: number; bankSize?: number; testSize?: number };
  /** Train the probe on the first n training images (0 = all). */
  trainSize?: number;
  log?: (line: string) => void;
}

export interface EvaluateOutcome {
  kind: 'knn' | 'linear';
  results: Record<string, number>;
  /** Which weights were evaluated. */
  weights: string;
  /** Where the result was written (absent when skipped). */
  file?: string;
  seconds: number;
  /** Why nothing was evaluated: the dataset has no labelled images (and what to set). */
  skipped?: string;
}

/** The final state of a run, or its newest checkpoint when it has not finished. */
function runWeights(runPath: string): { path: string; bundle: DecodedBundle } {
  const final = join(runPath, 'state', 'final.bin');
  if (existsSync(final)) return { path: final, bundle: readBundle(final) };
  const c = loadCheckpoint(checkpointDir(runPath));
  return { path: c.path, bundle: c.bundle };
}

/** A run rebuilt for use after training: see `openRun`. */
export interface OpenedRun {
  runPath: string;
  /** The run's resolved config (the whole training split: data.trainSubset=0). */
  config: ExperimentConfig;
  /** Which weights were loaded: state/final.bin, else the newest checkpoint. */
  weights: string;
  /** Composed as for training (encoder, dataset, method), holding the trained weights; the caller disposes it. */
  session: TrainingSession;
}

/**
 * Rebuilds a run's encoder (and the rest of its composition) from its
 * config.yaml and loads its trained weights: the final state, or the newest
 * checkpoint when the run has not finished. The one way evaluation, export and
 * embedding get at a trained encoder. A streamed image folder is opened
 * (index and evaluation images), not read whole.
 * @throws StateError when the folder is not a run or its weights do not match its config.
 */
export async function openRun(target: string, catalog: Catalog): Promise<OpenedRun> {
  const runPath = resolve(target);
  const config = loadExperiment(requireRunFolder(runPath), ['data.trainSubset=0']);
  const weights = runWeights(runPath);
  const session = createSession(config, catalog, { dataset: await loadDataset(config, catalog) });
  try {
    session.loadState(weights.bundle);
  } catch (e) {
    session.dispose();
    throw e;
  }
  return { runPath, config, weights: weights.path, session };
}

/**
 * `contrast eval knn|linear <run>`: rebuilds the run's encoder from its
 * config.yaml, loads its trained weights, evaluates on the full splits and
 * records the result in the run (eval/<kind>.json, summary.json, a metrics
 * record) and, when the run is tracked, in MLflow.
 */
export async function evaluateRun(
  target: string,
  kind: 'knn' | 'linear',
  catalog: Catalog,
  options: EvaluateOptions = {},
): Promise<EvaluateOutcome> {
  const log = options.log ?? ((l: string) => console.error(l));
  const { runPath, weights, session } = await openRun(target, catalog);
  const t0 = performance.now();
  try {
    if (session.dataset.unlabelled) {
      const what = kind === 'knn' ? 'kNN' : 'the linear probe';
      const skipped = `${what} skipped: ${session.dataset.unlabelled}`;
      log(skipped);
      return { kind, results: {}, weights, seconds: 0, skipped };
    }
    const results =
      kind === 'knn' ? evaluateKnn(session, options, log) : evaluateLinear(session, options, log);
    const seconds = (performance.now() - t0) / 1000;
    const file = await record(runPath, kind, { ...results, seconds }, weights, log);
    return { kind, results, weights, file, seconds };
  } finally {
    session.dispose();
  }
}

const batchesOf = (session: TrainingSession) => (split: ImageSplit, s: number, e: number) =>
  splitBatch(session.dataset, split, s, e);

/** kNN on the full splits (or the given sizes), the run's k and t unless overridden. */
function evaluateKnn(
  session: TrainingSession,
  options: EvaluateOptions,
  log: (line: string) => void,
): Record<string, number> {
  const k = options.knn ?? {};
  const { config } = session;
  const r = knnOnEncoder(session.dataset, batchesOf(session), session.encoder, {
    k: k.k ?? config.eval.knn.k,
    t: k.t ?? config.eval.knn.t,
    bankSize: k.bankSize ?? 0,
    testSize: k.testSize ?? 0,
  });
  log(`kNN top-1 ${(100 * r.accuracy).toFixed(2)}% (${r.bankSize} bank / ${r.testSize} test)`);
  return { knn_accuracy: r.accuracy, bank_size: r.bankSize, test_size: r.testSize };
}

/** MoCo's linear probe on frozen pooled features (BN in eval mode), computed once without augmentation. */
function evaluateLinear(
  session: TrainingSession,
  options: EvaluateOptions,
  log: (line: string) => void,
): Record<string, number> {
  const { dataset, encoder, config } = session;
  const probe = { ...LINEAR_PROBE_DEFAULTS, ...options.probe };
  const { bank: fitSplit, test } = evaluationSplits(dataset);
  const n = options.trainSize ? Math.min(options.trainSize, fitSplit.n) : fitSplit.n;
  const toBatch = batchesOf(session);
  const feats = (split: ImageSplit, count: number) =>
    extractFeatures(
      split,
      count,
      (s, e) => toBatch(split, s, e),
      (x) => encoder.features(x, false), // frozen backbone, BN in eval mode
      inferenceBatchSize(dataset.height, dataset.width),
      false,
    );
  const trainF = feats(fitSplit, n);
  const testF = feats(test, test.n);
  log(
    `linear probe: ${n} x ${trainF.shape[1]} features; ${probe.epochs} epochs, lr ${probe.lr}, momentum ${probe.momentum}, wd ${probe.weightDecay}`,
  );
  try {
    const r = linearProbe(
      { features: trainF, labels: Int32Array.from(fitSplit.labels.subarray(0, n)) },
      { features: testF, labels: Int32Array.from(test.labels) },
      dataset.numClasses,
      new Rng(config.seed),
      probe,
    );
    log(
      `linear top-1 ${(100 * r.top1).toFixed(2)}%, top-5 ${(100 * r.top5).toFixed(2)}% (train top-1 ${(100 * r.trainTop1).toFixed(2)}%)`,
    );
    return {
      linear_top1: r.top1,
      linear_top5: r.top5,
      linear_train_top1: r.trainTop1,
      linear_final_loss: r.losses[r.losses.length - 1] ?? Number.NaN,
      epochs: probe.epochs,
      train_size: n,
    };
  } finally {
    tf.dispose([trainF, testF]);
  }
}

/** Writes the result into the run folder and, when tracked, uploads it. */
async function record(
  runPath: string,
  kind: string,
  results: Record<string, number>,
  weights: string,
  log: (line: string) => void,
): Promise<string> {
  mkdirSync(join(runPath, 'eval'), { recursive: true });
  const file = join(runPath, 'eval', `${kind}.json`);
  const doc = { kind, weights, finished: new Date().toISOString(), ...results };
  writeFileAtomic(file, `${JSON.stringify(doc, null, 2)}\n`);
  const summaryPath = join(runPath, 'summary.json');
  const summary = existsSync(summaryPath)
    ? (JSON.parse(readFileSync(summaryPath, 'utf8')) as Record<string, unknown>)
    : {};
  const evals = { ...((summary.eval_results as Record<string, unknown>) ?? {}), [kind]: doc };
  writeFileAtomic(summaryPath, `${JSON.stringify({ ...summary, eval_results: evals }, null, 2)}\n`);
  const step = typeof summary.steps === 'number' ? summary.steps : 0;
  const epoch = typeof summary.epochs === 'number' ? summary.epochs : 0;
  const metrics = Object.fromEntries(
    Object.entries(results).filter(([k]) => k.startsWith('knn_') || k.startsWith('linear_')),
  );
  appendFileSync(
    join(runPath, 'metrics.jsonl'),
    `${JSON.stringify({ step, epoch, ...metrics, time: Date.now() / 1000 })}\n`,
  );
  if (hasMlflowState(runPath)) {
    const uploader = MlflowUploader.open(runPath, { warn: log });
    uploader.addArtifact(`eval/${kind}.json`, `eval/${kind}.json`);
    try {
      await uploader.pump();
      log(`[tracking] MLflow run ${uploader.runUrl()}`);
    } catch (e) {
      if (!(e instanceof TrackingError)) throw e;
      log(`[mlflow] not uploaded yet (${e.message}); later: contrast sync ${runPath}`);
    }
  }
  return file;
}
