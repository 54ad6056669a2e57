import { encodeBundle, type Tracker } from '@contrast/core';
import { checkHealth, type EmbeddingHealth, type HealthWarning } from '@contrast/eval';
import { cachedBaseline } from './baseline-cache.js';
import { writeCheckpoint } from './checkpoint.js';
import {
  alignUniformOf,
  embeddingHealthOf,
  knnMeasurementOf,
  knnOfEncoder,
  knnOfPixels,
  type KnnMeasurement,
} from './monitor.js';
import { Progress } from './progress.js';
import type { TrainingSession } from './session.js';

/** One completed training step, as the hooks see it. */
export interface StepRecord {
  /** 0-based index of the step just completed. */
  step: number;
  epoch: number;
  stepInEpoch: number;
  loss: number;
  lr: number;
  /** The method's metrics (e.g. pretext_accuracy) and step values (e.g. momentum). */
  metrics: Record<string, number>;
  /** Images in the batch. */
  images: number;
  /** Wall seconds since the previous step's hooks finished (batch waiting included). */
  seconds: number;
  /** tf.memory().numTensors after the step, minus the tensors of batches prefetched ahead. */
  tensors: number;
}

/** Where a run stands: what the hooks read and write, and what a checkpoint saves. */
export interface RunState {
  /** Steps completed. */
  step: number;
  /** The last completed batch: epoch, step in its epoch, random-stream positions after it. */
  last?: { epoch: number; step: number; position: { dataRng: number[]; augRng: number[] } };
  knnPerEpoch: { epoch: number; accuracy: number }[];
  baselines: { rawPixels?: number; randomInit?: number };
  lastLoss: number;
  /** The last epoch (0-based) with a kNN evaluation; -1 before any. */
  lastEvalEpoch: number;
  status: 'finished' | 'interrupted';
}

/** What the hooks add to a run's result. */
export interface HookResults {
  imgPerSec?: number;
  tensorsAfterStep?: number[];
  lastCheckpoint?: { path: string; bytes: number; seconds: number };
  alignment?: number;
  uniformity?: number;
  embeddingStd?: number;
  /** How the trained encoder's kNN numbers were measured (absent when none ran). */
  knnProtocol?: KnnMeasurement;
  /** The health checks: warnings raised, and the last epoch's embedding statistics. */
  health?: { warnings: HealthWarning[]; last?: EmbeddingHealth };
}

export interface RunContext {
  readonly session: TrainingSession;
  readonly tracker: Tracker;
  /** Steps the run takes in all, per epoch, and its epochs. */
  readonly total: number;
  readonly stepsPerEpoch: number;
  readonly epochs: number;
  /** True when the run continues from a checkpoint. */
  readonly resumed: boolean;
  readonly state: RunState;
  readonly results: HookResults;
  /** Prints a line (on stderr, above the progress bar). */
  log(line: string): void;
}

/**
 * Something that runs beside the training loop (docs/design.md): evaluation,
 * progress, tracking, checkpoints, health checks. Hooks run in list order at
 * each event; the loop itself knows none of them.
 */
export interface Hook {
  readonly name: string;
  /** Before the first step (after a resume's state is restored). */
  onStart?(run: RunContext): void;
  afterStep?(run: RunContext, record: StepRecord): void;
  /** After the last step of an epoch, and after the run's last step. `epoch` is 0-based. */
  onEpochEnd?(run: RunContext, epoch: number): void;
  /** The run was asked to stop (it ends with status 'interrupted'). */
  onStop?(run: RunContext): void;
  /** After the loop, finished or interrupted. */
  onEnd?(run: RunContext): void;
}

const percent = (x: number) => `${(100 * x).toFixed(2)}%`;

/**
 * kNN of raw pixels and of the random-init encoder before training (eval.baselines;
 * not without labelled images). With `cacheDir` (a study's), each is read from
 * there when a run with the same data, protocol and initial backbone computed it
 * (see baseline-cache.ts), and stored there otherwise.
 */
export function baselinesHook(cacheDir?: string): Hook {
  const took = (r: { seconds: number; cached: boolean }) =>
    r.cached ? `from the study's cache ${cacheDir}` : `${r.seconds.toFixed(1)} s`;
  return {
    name: 'baselines',
    onStart(run) {
      if (run.resumed || !run.session.config.eval.baselines) return;
      if (run.session.dataset.unlabelled) return; // the kNN hook says why
      const px = cachedBaseline(cacheDir, run.session, 'raw-pixels', () =>
        knnOfPixels(run.session),
      );
      run.log(
        `kNN raw pixels: ${percent(px.accuracy)} (${px.bankSize} bank / ${px.testSize} test, ${took(px)})`,
      );
      // the encoder is still at its random initialisation
      const init = cachedBaseline(cacheDir, run.session, 'random-init', () =>
        knnOfEncoder(run.session),
      );
      run.log(`kNN random-init encoder: ${percent(init.accuracy)} (${took(init)})`);
      run.state.baselines = { rawPixels: px.accuracy, randomInit: init.accuracy };
      run.tracker.logMetrics({
        step: 0,
        epoch: 0,
        knn_raw_pixels: px.accuracy,
        knn_random_init: init.accuracy,
      });
    },
  };
}

/**
 * Training throughput: images over seconds, skipping each epoch's first two
 * steps (warm-up, the evaluation just before). `rate` is NaN until timed steps exist.
 */
export class ThroughputHook implements Hook {
  readonly name = 'throughput';
  private images = 0;
  private seconds = 0;

  get rate(): number {
    return this.seconds > 0 ? this.images / this.seconds : Number.NaN;
  }

  afterStep(run: RunContext, r: StepRecord): void {
    if (r.step % run.stepsPerEpoch >= 2) {
      this.images += r.images;
      this.seconds += r.seconds;
    }
    run.results.imgPerSec = this.rate;
  }
}

/** Per-step metrics to the tracker: loss, lr, the method's metrics and values, img/s. */
export function metricsHook(): Hook {
  return {
    name: 'metrics',
    afterStep(run, r) {
      run.tracker.logMetrics({
        step: r.step,
        epoch: r.epoch,
        loss: r.loss,
        lr: r.lr,
        ...r.metrics,
        img_per_sec: r.images / r.seconds,
      });
    },
  };
}

/** The progress bar (or periodic lines when stderr is not a terminal). */
export function progressHook(progress: Progress, throughput: ThroughputHook): Hook {
  return {
    name: 'progress',
    afterStep(run, r) {
      const ips = Number.isNaN(throughput.rate) ? r.images / r.seconds : throughput.rate;
      progress.update({
        step: r.step,
        epoch: r.epoch,
        epochs: run.epochs,
        loss: r.loss,
        accuracy: r.metrics.pretext_accuracy,
        imgPerSec: ips,
        etaSec: ((run.total - r.step - 1) * run.session.config.optim.batchSize) / ips,
      });
    },
  };
}

/** tf.memory().numTensors after every step: constant when nothing leaks. */
export function leakHook(): Hook {
  const counts: number[] = [];
  return {
    name: 'leak-check',
    afterStep(run, r) {
      counts.push(r.tensors);
      run.results.tensorsAfterStep = counts;
    },
  };
}

/**
 * kNN every eval.knn.every epochs and after the last step; the final encoder's
 * if not yet evaluated. A stopped run skips that last one and exits promptly:
 * its encoder is evaluated when it is resumed and finishes. Skipped, with the
 * dataset's note, when it has no labelled images (an unlabelled streamed
 * folder without data.eval).
 */
export function knnHook(): Hook {
  const evaluate = (run: RunContext, epoch: number) => {
    const r = knnOfEncoder(run.session);
    run.results.knnProtocol = knnMeasurementOf(run.session, r);
    run.state.knnPerEpoch.push({ epoch: epoch + 1, accuracy: r.accuracy });
    run.state.lastEvalEpoch = epoch;
    return r;
  };
  return {
    name: 'knn',
    onStart(run) {
      const why = run.session.dataset.unlabelled;
      if (why) run.log(`kNN (and its baselines) skipped: ${why}`);
    },
    onEpochEnd(run, epoch) {
      const { every } = run.session.config.eval.knn;
      if (run.session.dataset.unlabelled) return;
      if (every <= 0 || ((epoch + 1) % every !== 0 && run.state.step !== run.total)) return;
      const r = evaluate(run, epoch);
      run.tracker.logMetrics({ step: run.state.step, epoch: epoch + 1, knn_accuracy: r.accuracy });
      run.log(`epoch ${epoch + 1}: kNN ${percent(r.accuracy)} (${r.seconds.toFixed(1)} s)`);
    },
    onEnd(run) {
      if (run.state.status !== 'finished' || run.session.dataset.unlabelled) return;
      const lastEpoch = Math.ceil(run.state.step / run.stepsPerEpoch) - 1;
      if (run.state.lastEvalEpoch !== lastEpoch || run.state.knnPerEpoch.length === 0) {
        evaluate(run, lastEpoch);
      }
    },
  };
}

/** Alignment and uniformity (Wang & Isola 2020) of the final embeddings, on held-out images (finished runs). */
export function alignUniformHook(): Hook {
  return {
    name: 'alignment-uniformity',
    onEnd(run) {
      if (run.state.status !== 'finished') return;
      const au = alignUniformOf(run.session);
      if (!au) return;
      Object.assign(run.results, au);
      const epoch = Math.ceil(run.state.step / run.stepsPerEpoch);
      const { alignment, uniformity, embeddingStd } = au;
      run.tracker.logMetrics({
        step: run.state.step,
        epoch,
        alignment,
        uniformity,
        embedding_std: embeddingStd,
      });
    },
  };
}

/** Where and how often the loop checkpoints. */
export interface CheckpointOptions {
  dir: string;
  /** Every n steps (0: only at epoch ends and on interrupt). */
  every: number;
  keep: number;
  /** Extra values stored with each checkpoint (e.g. how much of the metrics file it covers). */
  extra?: () => Record<string, unknown>;
}

/** What a checkpoint records besides the tensors, to continue exactly after its step. */
export interface CheckpointValues {
  /** Steps completed. */
  step: number;
  /** Epoch and step-in-epoch of the last completed batch. */
  epoch: number;
  stepInEpoch: number;
  position: { dataRng: number[]; augRng: number[] };
  knnPerEpoch: { epoch: number; accuracy: number }[];
  baselines: { rawPixels?: number; randomInit?: number };
  lastLoss: number;
  lastEvalEpoch: number;
}

/**
 * Checkpoints at every epoch end (after its kNN), every `every` steps, and when
 * the run is asked to stop: the session's state bundle plus the run state, atomically.
 */
export function checkpointHook(options: CheckpointOptions): Hook {
  let saved = -1;
  const save = (run: RunContext) => {
    const { state } = run;
    if (!state.last || saved === state.step) return;
    const t0 = performance.now();
    const values: CheckpointValues = {
      step: state.step,
      epoch: state.last.epoch,
      stepInEpoch: state.last.step,
      position: state.last.position,
      knnPerEpoch: state.knnPerEpoch,
      baselines: state.baselines,
      lastLoss: state.lastLoss,
      lastEvalEpoch: state.lastEvalEpoch,
    };
    const { tensors, values: stateValues } = run.session.stateBundle();
    const bytes = encodeBundle(tensors, { ...stateValues, ...values, ...options.extra?.() });
    const path = writeCheckpoint(options.dir, state.step, bytes, options.keep);
    saved = state.step;
    const seconds = (performance.now() - t0) / 1000;
    run.results.lastCheckpoint = { path, bytes: bytes.length, seconds };
  };
  return {
    name: 'checkpoint',
    onStart(run) {
      if (run.resumed) saved = run.state.step;
    },
    afterStep(run, r) {
      const epochEnd = r.stepInEpoch === run.stepsPerEpoch - 1 || run.state.step === run.total;
      if (!epochEnd && options.every > 0 && run.state.step % options.every === 0) save(run);
    },
    onEpochEnd: save,
    onStop: save,
  };
}

/**
 * Health checks at every epoch end (eval.health test images; DESIGN's hook):
 * embedding collapse, an early pretext shortcut, a loss stuck at chance
 * (`checkHealth`). Statistics go to the tracker as `health_*` metrics; each
 * warning is printed with its code, tagged on the run and kept in the summary.
 */
export function healthHook(): Hook {
  let losses: number[] = [];
  let accuracies: number[] = [];
  const warnings: HealthWarning[] = [];
  return {
    name: 'health',
    afterStep(_run, r) {
      losses.push(r.loss);
      if (r.metrics.pretext_accuracy !== undefined) accuracies.push(r.metrics.pretext_accuracy);
    },
    onEpochEnd(run, epoch) {
      const n = run.session.config.eval.health;
      if (n < 2) return;
      const embeddings = embeddingHealthOf(run.session, n);
      const tail = (xs: number[]) => xs.slice(-Math.max(1, Math.floor(xs.length / 4)));
      const { batchSize } = run.session.config.optim;
      const found = checkHealth({
        epoch: epoch + 1,
        epochs: run.epochs,
        embeddings,
        losses: tail(losses),
        accuracies: tail(accuracies),
        predictionsPerStep: batchSize,
        chanceLoss: run.session.method.chanceLoss?.(batchSize),
      });
      run.tracker.logMetrics({
        step: run.state.step,
        epoch: epoch + 1,
        health_embedding_std: embeddings.std,
        health_effective_rank: embeddings.effectiveRank,
        health_uniformity: embeddings.uniformity,
      });
      for (const w of found) {
        run.log(`warning [${w.code}] epoch ${w.epoch}: ${w.message}`);
        run.tracker.setTags?.({
          [`contrast.health.${w.code.slice(16).toLowerCase()}`]: `epoch ${w.epoch}`,
        });
      }
      warnings.push(...found);
      run.results.health = { warnings, last: embeddings };
      losses = [];
      accuracies = [];
    },
  };
}
