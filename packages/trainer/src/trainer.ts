import * as tf from '@tensorflow/tfjs';
import {
  DivergedError,
  isStreamed,
  StateError,
  type DecodedBundle,
  type Tracker,
} from '@contrast/core';
import { disposeBatch, tensorsPerBatch, type TwoViewBatch } from '@contrast/data';
import {
  alignUniformHook,
  baselinesHook,
  checkpointHook,
  healthHook,
  knnHook,
  leakHook,
  metricsHook,
  progressHook,
  ThroughputHook,
  type CheckpointOptions,
  type CheckpointValues,
  type Hook,
  type HookResults,
  type RunContext,
  type RunState,
  type StepRecord,
} from './hooks.js';
import { Progress } from './progress.js';
import { WorkerGroup } from './worker-group.js';
import { scheduledLr } from './sgd.js';
import type { KnnMeasurement } from './monitor.js';
import type { TrainingSession } from './session.js';

export { plannedSteps } from './session.js';
export type { CheckpointOptions, CheckpointValues } from './hooks.js';

export interface TrainResult {
  status: 'finished' | 'interrupted';
  steps: number;
  epochs: number;
  finalLoss: number;
  /** kNN top-1 on the test split: raw pixels and random init (when baselines are on), trained. */
  knn: { rawPixels?: number; randomInit?: number; trained: number };
  knnPerEpoch: { epoch: number; accuracy: number }[];
  /** How the kNN numbers were measured (absent when no kNN ran, e.g. stopped early). */
  knnProtocol?: KnnMeasurement;
  imgPerSec: number;
  wallSeconds: number;
  peakRssMb: number;
  /** tf.memory().numTensors after each step; constant when nothing leaks. */
  tensorsAfterStep: number[];
  /** The last checkpoint written: path, size and write time. */
  lastCheckpoint?: { path: string; bytes: number; seconds: number };
  /** Wang & Isola's alignment and uniformity of the final embeddings on test images. */
  alignment?: number;
  uniformity?: number;
  /** Per-dimension std of the final L2-normalised embeddings (0 = collapsed; ~1/sqrt(D) healthy). */
  embeddingStd?: number;
  /** Health warnings raised during the run (collapse, shortcut, stalled loss), and the last statistics. */
  health?: HookResults['health'];
  /** Streamed datasets: unreadable files skipped so far (each replaced by the next readable image). */
  skippedFiles?: number;
}

export interface TrainOptions {
  progress?: boolean;
  checkpoint?: CheckpointOptions;
  /** A checkpoint (from loadCheckpoint) to continue from. */
  resume?: DecodedBundle;
  /** Polled before every step; training stops cleanly (checkpoint, 'interrupted') when it returns true. */
  shouldStop?: () => boolean;
  log?: (line: string) => void;
  /** Hooks run after the built-in ones (e.g. a health monitor). */
  hooks?: Hook[];
  /**
   * A folder the kNN baselines are shared through (a study's `baselines/`): each is
   * computed by the first run that needs it and read by the others (baselinesHook).
   */
  baselineCache?: string;
}

/**
 * The training loop around the generic step: it draws batches, sets the clock
 * and the lr schedule, runs the step, and hands each step and epoch end to the
 * hooks (kNN, baselines, alignment/uniformity, progress, metrics, checkpoints).
 */
export class Trainer {
  constructor(
    readonly session: TrainingSession,
    readonly tracker: Tracker,
  ) {}

  /** The built-in hooks, in the order they run (kNN before the epoch-end checkpoint). */
  defaultHooks(options: TrainOptions, run: { total: number }): Hook[] {
    const { config } = this.session;
    const throughput = new ThroughputHook();
    const progress = new Progress(
      run.total,
      config.tracking.logEvery,
      process.stderr,
      options.progress ?? true,
    );
    return [
      baselinesHook(options.baselineCache),
      throughput,
      metricsHook(),
      progressHook(progress, throughput),
      leakHook(),
      knnHook(),
      healthHook(),
      ...(options.checkpoint ? [checkpointHook(options.checkpoint)] : []),
      alignUniformHook(),
      ...(options.hooks ?? []),
    ];
  }

  async run(options: TrainOptions = {}): Promise<TrainResult> {
    const t0 = performance.now();
    const run = this.begin(options);
    const { state, session } = run;
    const group =
      session.collectives.worldSize > 1 ? new WorkerGroup(session, session.collectives) : undefined;
    // data-parallel: rank 0 evaluates, tracks and checkpoints; the others only train
    const hooks = !group || group.writes ? this.defaultHooks(options, run) : workerHooks();
    const emit = (f: (h: Hook) => void) => hooks.forEach(f);
    // data-parallel: the same initial (or resumed) state everywhere; rank 0 writes while the others wait
    const at = async (work: () => void) => (group ? group.around(work) : work());
    group?.sync();
    await at(() => emit((h) => h.onStart?.(run)));
    const start = state.last ? { epoch: state.last.epoch, step: state.last.step + 1 } : undefined;
    const ahead = session.batchStream(run.epochs, start, skipLogger(run.log));
    let tPrev = performance.now();
    for await (const batch of ahead) {
      if (!group && options.shouldStop?.()) {
        disposeBatch(batch);
        state.status = 'interrupted';
        emit((h) => h.onStop?.(run));
        break;
      }
      // a worker's stop vote travels with the step's all-reduce: the group stops after it, together
      const { record, stopAll } = this.trainOn(run, batch, tPrev, ahead.buffered, {
        stop: group ? (options.shouldStop?.() ?? false) : false,
      });
      const epochEnd = batch.step === run.stepsPerEpoch - 1 || state.step === run.total;
      const stopping = stopAll && state.step < run.total;
      const events = () => {
        emit((h) => h.afterStep?.(run, record));
        if (epochEnd) emit((h) => h.onEpochEnd?.(run, batch.epoch));
        if (stopping) {
          state.status = 'interrupted';
          emit((h) => h.onStop?.(run));
        }
      };
      const every = session.config.checkpoint.every;
      if (group && (epochEnd || stopping || (every > 0 && state.step % every === 0))) {
        group.sync(); // the running statistics rank 0 evaluates and checkpoints
        await group.around(events);
      } else {
        events();
      }
      tPrev = performance.now();
      if (stopAll || state.step >= run.total) break;
    }
    await at(() => emit((h) => h.onEnd?.(run)));
    return this.result(run, t0);
  }

  /** One step on a batch: schedule, clock, the step, the logged scalars; the run state advances. */
  private trainOn(
    run: RunContext,
    batch: TwoViewBatch,
    tPrev: number,
    held: number,
    vote: { stop: boolean },
  ): { record: StepRecord; stopAll: boolean } {
    const { session, state } = run;
    const step = state.step;
    const lr = scheduledLr(session.config.optim, step, run.total, run.stepsPerEpoch);
    session.clock.step = step;
    session.clock.total = run.total;
    const values = session.method.stepValues?.() ?? {}; // before the step's EMA update uses them
    const out = session.step(batch, lr, undefined, vote.stop);
    const loss = out.loss.dataSync()[0]!; // the logged scalars: one host read each
    const metrics: Record<string, number> = { ...values };
    for (const [k, t] of Object.entries(out.metrics)) metrics[k] = t.dataSync()[0]!;
    const stopAll = out.stopVotes ? out.stopVotes.dataSync()[0]! > 0 : false;
    tf.dispose([
      out.loss,
      ...Object.values(out.metrics),
      ...(out.stopVotes ? [out.stopVotes] : []),
    ]);
    const images = batch.part ? batch.part.batchIndexArray.length : batch.indices.shape[0];
    disposeBatch(batch);
    if (!Number.isFinite(loss)) {
      throw new DivergedError(step, loss, {
        hint: 'lower optim.lr or raise loss.temperature',
      });
    }
    state.step = step + 1;
    state.lastLoss = loss;
    state.last = { epoch: batch.epoch, step: batch.step, position: batch.position };
    const seconds = (performance.now() - tPrev) / 1000;
    // batches held ahead are not leaks
    const tensors = tf.memory().numTensors - tensorsPerBatch(session.augmentation) * held;
    return {
      record: {
        step,
        epoch: batch.epoch,
        stepInEpoch: batch.step,
        loss,
        lr,
        metrics,
        images,
        seconds,
        tensors,
      },
      stopAll,
    };
  }

  /** The run's context: fresh, or restored from a checkpoint (weights, streams, run state). */
  private begin(options: TrainOptions): RunContext {
    const { session } = this;
    const total = session.totalSteps;
    const stepsPerEpoch = session.stepsPerEpoch;
    const state: RunState = {
      step: 0,
      knnPerEpoch: [],
      baselines: {},
      lastLoss: Number.NaN,
      lastEvalEpoch: -1,
      status: 'finished',
    };
    const log = options.log ?? ((l: string) => console.error(l));
    if (options.resume) this.restore(options.resume, state, total, log);
    return {
      session,
      tracker: this.tracker,
      total,
      stepsPerEpoch,
      epochs: Math.ceil(total / stepsPerEpoch),
      resumed: options.resume !== undefined,
      state,
      results: {},
      log,
    };
  }

  private restore(bundle: DecodedBundle, state: RunState, total: number, log: (l: string) => void) {
    const saved = bundle.values as unknown as CheckpointValues;
    this.session.loadState(bundle);
    if (saved.step >= total) {
      throw new StateError(`the run already finished its ${total} steps`, {
        hint: 'to train longer, start a new run (the schedule depends on the total length)',
      });
    }
    this.session.dataRng.setState(saved.position.dataRng);
    this.session.augmentation.setRngState(saved.position.augRng);
    Object.assign(state, {
      step: saved.step,
      last: { epoch: saved.epoch, step: saved.stepInEpoch, position: saved.position },
      knnPerEpoch: [...saved.knnPerEpoch],
      baselines: saved.baselines ?? {},
      lastLoss: saved.lastLoss,
      lastEvalEpoch: saved.lastEvalEpoch,
    });
    log(
      `resuming after step ${saved.step} (epoch ${saved.epoch + 1}, step ${saved.stepInEpoch + 1} of the epoch)`,
    );
  }

  private result(run: RunContext, t0: number): TrainResult {
    const { state, results } = run;
    const train = run.session.dataset.train;
    const last = state.knnPerEpoch[state.knnPerEpoch.length - 1];
    return {
      ...(results.alignment !== undefined
        ? {
            alignment: results.alignment,
            uniformity: results.uniformity!,
            embeddingStd: results.embeddingStd!,
          }
        : {}),
      status: state.status,
      steps: state.step,
      epochs: Math.ceil(state.step / run.stepsPerEpoch),
      finalLoss: state.lastLoss,
      knn: { ...state.baselines, trained: last?.accuracy ?? Number.NaN },
      knnPerEpoch: state.knnPerEpoch,
      imgPerSec: results.imgPerSec ?? Number.NaN,
      wallSeconds: (performance.now() - t0) / 1000,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
      tensorsAfterStep: results.tensorsAfterStep ?? [],
      ...(results.lastCheckpoint ? { lastCheckpoint: results.lastCheckpoint } : {}),
      ...(results.health ? { health: results.health } : {}),
      ...(results.knnProtocol ? { knnProtocol: results.knnProtocol } : {}),
      ...(isStreamed(train) ? { skippedFiles: train.skipped.size } : {}),
    };
  }
}

/** The hooks of a worker that does not write (rank > 0): its throughput for its own result. */
function workerHooks(): Hook[] {
  return [new ThroughputHook()];
}

/** Logs the first unreadable files a stream skips, then only counts them (summary.json has the total). */
function skipLogger(log: (line: string) => void): (file: string, reason: string) => void {
  let logged = 0;
  return (file, reason) => {
    if (++logged <= 10) log(`skipped unreadable ${file} (${reason}); data.strict: true refuses it`);
    if (logged === 10)
      log('further unreadable files are only counted (skipped_files in summary.json)');
  };
}
