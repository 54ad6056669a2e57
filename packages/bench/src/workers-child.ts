#!/usr/bin/env node
/**
 * One process of `pnpm bench --workers N`: the real trainer's step on the
 * default experiment (experiments/moco-fmnist.yaml, optionally with another
 * encoder), alone or as one worker of a loopback cluster. Prints one JSON line
 * (WorkersRowResult); rank 0's is the row's.
 */
import 'reflect-metadata';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@contrast/backend';
import { loadExperiment, type Collectives } from '@contrast/core';
import { disposeBatch, loadFashionMnist, type TwoViewBatch } from '@contrast/data';
import { joinCluster, type TfCollectives } from '@contrast/distributed';
import { momentumQueuePlugin } from '@contrast/plugin-momentum-queue';
import { createCatalog, createStepHarness } from '@contrast/trainer';
import { median } from './spec.js';
import type { WorkersRowResult, WorkersRowSpec } from './workers-spec.js';

/**
 * Collectives that add the wall time of each call to `seconds` (the native
 * kernels run synchronously, so it is the collective's time, including the wait
 * for the slowest worker). The gradient of `allGatherWithGradient` (an
 * all-reduce in the backward pass) is not seen here: the bench's MoCo has none.
 */
class TimedCollectives implements Collectives {
  readonly seconds = { allReduce: 0, gather: 0 };
  constructor(private readonly inner: TfCollectives) {}
  get rank() {
    return this.inner.rank;
  }
  get worldSize() {
    return this.inner.worldSize;
  }
  private timed<R>(kind: 'allReduce' | 'gather', f: () => R): R {
    const t0 = performance.now();
    const out = f();
    this.seconds[kind] += (performance.now() - t0) / 1000;
    return out;
  }
  allReduceMean(t: tf.Tensor[]) {
    return this.timed('allReduce', () => this.inner.allReduceMean(t));
  }
  allReduceSum(t: tf.Tensor[]) {
    return this.timed('allReduce', () => this.inner.allReduceSum(t));
  }
  allGather<T extends tf.Tensor>(x: T, options?: { sameShape?: boolean }): T {
    return this.timed('gather', () => this.inner.allGather(x, options));
  }
  allGatherWithGradient<T extends tf.Tensor>(x: T, options?: { sameShape?: boolean }): T {
    return this.timed('gather', () => this.inner.allGatherWithGradient(x, options));
  }
  broadcast<T extends tf.Tensor>(x: T, root?: number): T {
    return this.inner.broadcast(x, root);
  }
  barrier(timeoutSeconds?: number) {
    this.inner.barrier(timeoutSeconds);
  }
  waitFor<R>(work: () => R | Promise<R>, root?: number) {
    return this.inner.waitFor(work, root);
  }
}

/** The median seconds of `f` over `n` calls after one warm-up. */
function timeOf(f: () => tf.Tensor[], n: number): number {
  tf.dispose(f());
  const s: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    tf.dispose(f());
    s.push((performance.now() - t0) / 1000);
  }
  return median(s);
}

/**
 * The ring's constants between these workers: the all-reduce of one float
 * (latency alone) and of the model's gradient size (bandwidth), seconds.
 */
function ringConstants(c: TfCollectives, floats: number) {
  const one = tf.scalar(1);
  const grad = tf.randomUniform([floats]);
  const tiny = timeOf(() => c.allReduceMean([one]), 20);
  const full = timeOf(() => c.allReduceMean([grad]), 5);
  tf.dispose([one, grad]);
  return { tinyAllReduceSeconds: tiny, gradientAllReduceSeconds: full };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]!) as WorkersRowSpec;
  await initBackend('tensorflow');
  const joined = spec.cluster
    ? await joinCluster({
        cluster: spec.cluster,
        rank: spec.rank ?? 0,
        configHash: 'bench',
        timeoutSeconds: 300,
      })
    : undefined;
  const collectives = joined ? new TimedCollectives(joined) : undefined;
  const config = loadExperiment(spec.experiment, [
    `optim.batchSize=${spec.batch}`,
    ...spec.overrides,
    'eval.knn.every=0',
  ]);
  const h = createStepHarness(config, createCatalog([momentumQueuePlugin()]), {
    dataset: loadFashionMnist(),
    ...(collectives ? { collectives } : {}),
  });
  const batches: TwoViewBatch[] = [h.nextBatch(), h.nextBatch()];
  const step = (b: TwoViewBatch) => {
    const out = h.stepOn(b, config.optim.lr);
    out.loss.dataSync();
    tf.dispose([out.loss, ...Object.values(out.metrics), out.stopVotes]);
  };
  for (let i = 0; i < spec.warmup; i++) step(batches[i % 2]!);
  const issuedBefore = joined?.collectivesIssued ?? 0;
  const stepSeconds: number[] = [];
  const allReduce: number[] = [];
  const gather: number[] = [];
  for (let i = 0; i < spec.steps; i++) {
    const [ar, g] = [collectives?.seconds.allReduce ?? 0, collectives?.seconds.gather ?? 0];
    const t0 = performance.now();
    step(batches[i % 2]!);
    stepSeconds.push((performance.now() - t0) / 1000);
    allReduce.push((collectives?.seconds.allReduce ?? 0) - ar);
    gather.push((collectives?.seconds.gather ?? 0) - g);
  }
  const collectivesPerStep = ((joined?.collectivesIssued ?? 0) - issuedBefore) / spec.steps;
  const parameters = h.method.parameterGroups().flatMap((g) => g.params);
  const gradientFloats = parameters.reduce((n, p) => n + p.size, 0);
  const ring = joined ? ringConstants(joined, gradientFloats) : undefined;
  batches.forEach(disposeBatch);
  h.dispose();
  const result: WorkersRowResult = {
    threads: Number(process.env.TF_NUM_INTRAOP_THREADS ?? 0),
    stepSeconds,
    imgPerSec: spec.batch / median(stepSeconds),
    allReduceSeconds: median(allReduce),
    gatherSeconds: median(gather),
    collectivesPerStep,
    gradientFloats,
    ...(ring ?? {}),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  joined?.barrier(); // every server stays up until all workers are done
  process.exit(0);
}

void main();
