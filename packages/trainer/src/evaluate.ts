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
  linearEvaluation,
  PROBE_LR_SWEEP,
  type LinearEvaluation,
  type LinearProbeOptions,
} from '@contrast/eval';
import { hasMlflowState, lockRun, MlflowUploader } from '@contrast/tracking';
import { checkpointDir, loadCheckpoint } from './checkpoint.js';
import { requireRunFolder } from './run.js';
import { createSession, type TrainingSession } from './session.js';

export interface EvaluateOptions {
  /**
   * Linear probe settings (MoCo's schedule by default; epochs usually lowered on
   * CPU). Without `lr`, the lr is selected on held-out training images.
   */
  probe?: Partial<LinearProbeOptions>;
  /** kNN settings (default: the run's k and t, the whole train split as bank, the whole test split). */
  knn?: { k?: number; t?: number; bankSize?: number; testSize?: number };
  /** Train the probe on the first n training images (0 = all). */
  trainSize?: number;
  log?: (line: string) => void;
}

export interface EvaluateOutcome {
  kind: 'knn' | 'linear';
  /** Evaluated on fewer images than the full splits: recorded as `<kind>-subset`, not as the headline. */
  subset: boolean;
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
 * config.yaml, loads its trained weights, evaluates and records the result in
 * the run (eval/<name>.json, summary.json's eval_results, a metrics record) and,
 * when the run is tracked, in MLflow. On the full splits the result is the
 * run's headline (`knn_accuracy`, `linear_top1`); on fewer images (a kNN bank
 * or test set, or probe training images, below the split's size) it is stored
 * as a subset beside it (`knn-subset` / `linear-subset`, metrics suffixed
 * `_subset`, its sizes as `<kind>_subset_*_size`) and never replaces it.
 * The run folder is locked while it is evaluated (`run.lock`, as training does).
 * @throws RunLockedError (CONTRAST_RUN_LOCKED) when another live process (a
 *   training still running, another `contrast eval`) holds the run folder
 */
export async function evaluateRun(
  target: string,
  kind: 'knn' | 'linear',
  catalog: Catalog,
  options: EvaluateOptions = {},
): Promise<EvaluateOutcome> {
  const log = options.log ?? ((l: string) => console.error(l));
  const { runPath, weights, session } = await openRun(target, catalog);
  let lock: ReturnType<typeof lockRun> | undefined;
  const t0 = performance.now();
  try {
    lock = lockRun(runPath);
    if (session.dataset.unlabelled) {
      const what = kind === 'knn' ? 'kNN' : 'the linear probe';
      const skipped = `${what} skipped: ${session.dataset.unlabelled}`;
      log(skipped);
      return { kind, subset: false, results: {}, weights, seconds: 0, skipped };
    }
    const m =
      kind === 'knn' ? evaluateKnn(session, options, log) : evaluateLinear(session, options, log);
    const seconds = (performance.now() - t0) / 1000;
    const name = m.subset ? (`${kind}-subset` as const) : kind;
    const file = await record(runPath, name, m, seconds, weights, log);
    return { kind, subset: m.subset, results: m.results, weights, file, seconds };
  } finally {
    lock?.release();
    session.dispose();
  }
}

/** One evaluation's outcome before it is recorded. */
interface Measured {
  /** Fewer images than the full splits: stored as a subset. */
  subset: boolean;
  /** Metrics (names starting knn_ / linear_ go to metrics.jsonl and MLflow) and sizes. */
  results: Record<string, number>;
  /** Written to eval/<name>.json and the summary only (e.g. the lr candidates). */
  details?: Record<string, unknown>;
  /** MLflow run tags to set. */
  tags?: Record<string, string>;
}

const batchesOf = (session: TrainingSession) => (split: ImageSplit, s: number, e: number) =>
  splitBatch(session.dataset, split, s, e);

/** kNN on the full splits (or the given sizes), the run's k and t unless overridden. */
function evaluateKnn(
  session: TrainingSession,
  options: EvaluateOptions,
  log: (line: string) => void,
): Measured {
  const k = options.knn ?? {};
  const { config, dataset } = session;
  const r = knnOnEncoder(dataset, batchesOf(session), session.encoder, {
    k: k.k ?? config.eval.knn.k,
    t: k.t ?? config.eval.knn.t,
    bankSize: k.bankSize ?? 0,
    testSize: k.testSize ?? 0,
  });
  const { bank, test } = evaluationSplits(dataset);
  const subset = r.bankSize < bank.n || r.testSize < test.n;
  const sizes = `${r.bankSize} of ${bank.n} bank / ${r.testSize} of ${test.n} test`;
  if (!subset) {
    log(`kNN top-1 ${(100 * r.accuracy).toFixed(2)}% (${sizes})`);
    return {
      subset,
      results: { knn_accuracy: r.accuracy, bank_size: r.bankSize, test_size: r.testSize },
    };
  }
  log(
    `kNN top-1 ${(100 * r.accuracy).toFixed(2)}% on a subset (${sizes}): recorded as knn_subset / knn_accuracy_subset; the full-split knn_accuracy is left as it was`,
  );
  return {
    subset,
    results: {
      knn_accuracy_subset: r.accuracy,
      knn_subset_bank_size: r.bankSize,
      knn_subset_test_size: r.testSize,
    },
  };
}

/**
 * The linear probe on frozen pooled features (BN in eval mode), computed once
 * without augmentation: at `probe.lr` when given, else at the lr
 * `linearEvaluation` selects on a held-out part of the training split.
 */
function evaluateLinear(
  session: TrainingSession,
  options: EvaluateOptions,
  log: (line: string) => void,
): Measured {
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
  const fixedLr = options.probe?.lr;
  const lrText =
    fixedLr !== undefined
      ? `lr ${fixedLr} (fixed)`
      : `lr selected from ${PROBE_LR_SWEEP.lrs.join(', ')} on ${100 * PROBE_LR_SWEEP.heldOut}% of the training images held out`;
  log(
    `linear probe: ${n} x ${trainF.shape[1]} features; ${probe.epochs} epochs, ${lrText}, momentum ${probe.momentum}, wd ${probe.weightDecay}`,
  );
  try {
    const r = linearEvaluation(
      { features: trainF, labels: Int32Array.from(fitSplit.labels.subarray(0, n)) },
      { features: testF, labels: Int32Array.from(test.labels) },
      dataset.numClasses,
      new Rng(config.seed),
      { ...options.probe, epochs: probe.epochs },
    );
    return linearMeasured(r, { n, full: fitSplit.n, epochs: probe.epochs, lrText }, log);
  } finally {
    tf.dispose([trainF, testF]);
  }
}

/** The probe's result as recorded: the full split's names, or `_subset` ones with the size. */
function linearMeasured(
  r: LinearEvaluation,
  at: { n: number; full: number; epochs: number; lrText: string },
  log: (line: string) => void,
): Measured {
  const subset = at.n < at.full;
  const chosen = r.selection?.candidates.find((c) => c.lr === r.lr);
  for (const c of r.selection?.candidates ?? []) {
    log(
      `  lr ${c.lr}: held-out top-1 ${(100 * c.heldOutTop1).toFixed(2)}%, final training loss ${c.finalLoss.toFixed(4)}${c === chosen ? '  <- selected' : ''}`,
    );
  }
  log(
    `linear top-1 ${(100 * r.top1).toFixed(2)}%, top-5 ${(100 * r.top5).toFixed(2)}% at lr ${r.lr} (train top-1 ${(100 * r.trainTop1).toFixed(2)}%, final loss ${(r.losses.at(-1) ?? Number.NaN).toFixed(4)})` +
      (subset
        ? `; on a subset (${at.n} of ${at.full} training images): recorded as linear_subset / linear_*_subset, the full-split linear_top1 is left as it was`
        : ''),
  );
  const suffix = subset ? '_subset' : '';
  const results: Record<string, number> = {
    [`linear_top1${suffix}`]: r.top1,
    [`linear_top5${suffix}`]: r.top5,
    [`linear_train_top1${suffix}`]: r.trainTop1,
    [`linear_final_loss${suffix}`]: r.losses.at(-1) ?? Number.NaN,
    [`linear_lr${suffix}`]: r.lr,
    ...(chosen ? { [`linear_lr_heldout_top1${suffix}`]: chosen.heldOutTop1 } : {}),
    epochs: at.epochs,
    ...(subset ? { linear_subset_train_size: at.n } : { train_size: at.n }),
  };
  const details = r.selection
    ? {
        lr_selection: {
          protocol: at.lrText,
          held_out: r.selection.heldOut.length,
          fitted: r.selection.fitted.length,
          candidates: r.selection.candidates.map((c) => ({
            lr: c.lr,
            held_out_top1: c.heldOutTop1,
            final_loss: c.finalLoss,
          })),
        },
      }
    : { lr_selection: { protocol: at.lrText } };
  return {
    subset,
    results,
    details,
    tags: { [`contrast.eval.linear${suffix}_lr`]: `${r.lr}: ${at.lrText}` },
  };
}

/** Writes the result into the run folder under `name` and, when tracked, uploads it. */
async function record(
  runPath: string,
  name: 'knn' | 'knn-subset' | 'linear' | 'linear-subset',
  m: Measured,
  seconds: number,
  weights: string,
  log: (line: string) => void,
): Promise<string> {
  mkdirSync(join(runPath, 'eval'), { recursive: true });
  const file = join(runPath, 'eval', `${name}.json`);
  const doc = {
    kind: name,
    weights,
    finished: new Date().toISOString(),
    ...m.results,
    seconds,
    ...m.details,
  };
  writeFileAtomic(file, `${JSON.stringify(doc, null, 2)}\n`);
  const summaryPath = join(runPath, 'summary.json');
  const summary = existsSync(summaryPath)
    ? (JSON.parse(readFileSync(summaryPath, 'utf8')) as Record<string, unknown>)
    : {};
  const key = name.replace('-', '_'); // knn, knn_subset, linear, linear_subset
  const evals = { ...((summary.eval_results as Record<string, unknown>) ?? {}), [key]: doc };
  writeFileAtomic(summaryPath, `${JSON.stringify({ ...summary, eval_results: evals }, null, 2)}\n`);
  const step = typeof summary.steps === 'number' ? summary.steps : 0;
  const epoch = typeof summary.epochs === 'number' ? summary.epochs : 0;
  const metrics = Object.fromEntries(
    Object.entries(m.results).filter(([k]) => k.startsWith('knn_') || k.startsWith('linear_')),
  );
  appendFileSync(
    join(runPath, 'metrics.jsonl'),
    `${JSON.stringify({ step, epoch, ...metrics, time: Date.now() / 1000 })}\n`,
  );
  if (hasMlflowState(runPath)) {
    const uploader = MlflowUploader.open(runPath, { warn: log });
    uploader.addArtifact(`eval/${name}.json`, `eval/${name}.json`);
    if (m.tags) uploader.addTags(m.tags);
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
