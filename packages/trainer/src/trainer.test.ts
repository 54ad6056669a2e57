import { describe, expect, it } from 'vitest';
import {
  composeContrastive,
  definePlugin,
  MomentumKeyEncoder,
  parseExperiment,
  QueueSource,
  z,
  type ExperimentConfig,
  type MetricRecord,
  type Tracker,
} from '@contrast/core';
import { createCatalog } from './catalog.js';
import type { Hook } from './hooks.js';
import { createSession } from './session.js';
import { Trainer, type TrainOptions } from './trainer.js';

/** A MoCo of shared parts, so the loop is tested without any plugin package. */
const moco = definePlugin({
  name: 'moco',
  description: 'momentum keys and a queue',
  configSchema: z.object({ name: z.literal('moco') }),
  loss: { default: 'infonce', kind: 'explicit', temperature: 0.1 },
  build(ctx) {
    const keyEncoder = new MomentumKeyEncoder(ctx.encoder, 0.99);
    const source = new QueueSource('moco', 64, ctx.encoder.embedDim, ctx.rng.fork());
    return composeContrastive(ctx, { keyEncoder, source });
  },
});
const catalog = () => createCatalog([moco]);

/** A tracker that only remembers (the loop's tests need no run folder). */
function memoryTracker(): Tracker & { records: MetricRecord[] } {
  const records: MetricRecord[] = [];
  return {
    name: 'memory',
    records,
    logParams: () => undefined,
    logMetrics: (r) => void records.push(r),
    setSummary: () => undefined,
    saveArtifact: () => undefined,
    close: async () => undefined,
  };
}

/** 256 images, batch 64: 4 steps per epoch; 2 epochs = 8 steps. */
const config = (extra: Record<string, unknown> = {}) =>
  parseExperiment({
    name: 'loop',
    data: { trainSubset: 256 },
    model: { encoder: 'convnet', width: 0.25, dim: 16 },
    strategy: { name: 'moco' },
    optim: { batchSize: 64, epochs: 2 },
    eval: { knn: { bankSize: 256, testSize: 100 }, baselines: false, alignUniform: 0 },
    ...extra,
  });

function recorder(events: string[]): Hook {
  return {
    name: 'recorder',
    onStart: (run) => void events.push(`start ${run.total}/${run.stepsPerEpoch}`),
    afterStep: (_run, r) => void events.push(`step ${r.step}`),
    onEpochEnd: (run, e) => void events.push(`epoch ${e} (knn ${run.state.knnPerEpoch.length})`),
    onStop: (run) => void events.push(`stop at ${run.state.step}`),
    onEnd: (run) => void events.push(`end ${run.state.status}`),
  };
}

/** Trains `config` with a recording hook; returns the events, the result and the tracker. */
async function train(experiment: ExperimentConfig, options: TrainOptions = {}) {
  const session = createSession(experiment, catalog());
  const events: string[] = [];
  const tracker = memoryTracker();
  const result = await new Trainer(session, tracker).run({
    progress: false,
    hooks: [recorder(events)],
    log: () => undefined,
    ...options,
  });
  session.dispose();
  return { events, result, tracker };
}

describe('the training loop and its hooks', () => {
  it('calls the hooks in order: start, each step, epoch ends after their kNN, end', async () => {
    const { events, result, tracker } = await train(config());
    expect(events).toEqual([
      'start 8/4',
      'step 0',
      'step 1',
      'step 2',
      'step 3',
      'epoch 0 (knn 1)', // the built-in kNN hook ran before this one
      'step 4',
      'step 5',
      'step 6',
      'step 7',
      'epoch 1 (knn 2)',
      'end finished',
    ]);
    expect(result).toMatchObject({ status: 'finished', steps: 8, epochs: 2 });
    expect(result.knnPerEpoch.map((k) => k.epoch)).toEqual([1, 2]);
    const steps = tracker.records.filter((r) => r.loss !== undefined);
    expect(steps.map((r) => r.step)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(Object.keys(steps[0]!)).toEqual([
      'step',
      'epoch',
      'loss',
      'lr',
      'momentum',
      'pretext_accuracy',
      'img_per_sec',
    ]);
    expect(new Set(result.tensorsAfterStep.slice(1)).size).toBe(1);
  });

  it('multi-crop (2 global + 4 local crops): no tensor leaks, batches held ahead counted with all their crops', async () => {
    const views = [
      { name: 'global', count: 2 },
      { name: 'local', count: 4, crop: { size: 12, scale: [0.05, 0.4] } },
    ];
    const { result } = await train(
      config({
        data: { trainSubset: 256, prefetch: 2, views },
        eval: {
          knn: { every: 0, bankSize: 256, testSize: 100 },
          baselines: false,
          alignUniform: 0,
        },
      }),
    );
    expect(result).toMatchObject({ status: 'finished', steps: 8 });
    // the prefetcher holds 2, then 1, then 0 batches of 7 tensors at the end of the run
    expect(result.tensorsAfterStep).toHaveLength(8);
    expect(new Set(result.tensorsAfterStep.slice(1)).size).toBe(1);
  });

  it('a stop request ends the run after the current step: onStop, no final kNN, status interrupted', async () => {
    let polls = 0;
    const { events, result } = await train(config(), { shouldStop: () => ++polls > 3 });
    expect(events).toEqual([
      'start 8/4',
      'step 0',
      'step 1',
      'step 2',
      'stop at 3',
      'end interrupted',
    ]);
    expect(result).toMatchObject({ status: 'interrupted', steps: 3, epochs: 1 });
    // a stopped run exits promptly: its encoder is evaluated when it is resumed and finishes
    expect(result.knnPerEpoch).toEqual([]);
    expect(result.knn.trained).toBeNaN();
    expect(result.alignment).toBeUndefined();
  });

  it('maxSteps ends mid-epoch with an epoch end for the partial epoch', async () => {
    const { events } = await train(config({ optim: { batchSize: 64, epochs: 2, maxSteps: 6 } }));
    expect(events.slice(-4)).toEqual(['step 4', 'step 5', 'epoch 1 (knn 2)', 'end finished']);
  });
});
