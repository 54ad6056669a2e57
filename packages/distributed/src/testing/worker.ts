/**
 * One worker of the multi-process tests (collectives.test.ts) and of the
 * micro-benchmark: `node dist/testing/worker.js '<json spec>'`. It joins the
 * cluster, runs one scenario and prints one JSON object per line on stdout.
 */
import 'reflect-metadata';
import { createInterface } from 'node:readline';
import * as tf from '@tensorflow/tfjs';
import { joinCluster, type TfCollectives } from '../index.js';

export interface WorkerSpec {
  workers: string[];
  rank: number;
  scenario: 'ops' | 'join' | 'die' | 'bench';
  configHash?: string;
  timeoutSeconds?: number;
  joinTimeoutSeconds?: number;
}

const say = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

function errorReport(e: unknown) {
  const err = e as { code?: string; message?: string; lostRanks?: number[]; hint?: string };
  return { code: err.code, message: err.message, lostRanks: err.lostRanks, hint: err.hint };
}

/** Rank r holds known values; the test checks every result against its closed form. */
async function ops(c: TfCollectives, spec: WorkerSpec): Promise<void> {
  const r = c.rank;
  const before = tf.memory().numTensors;
  const a = tf.tensor1d([r + 1, 10 * (r + 1)]);
  const b = tf.tensor2d([
    [r, -r],
    [2 * r, 0.5],
  ]);
  const mean = c.allReduceMean([a, b]);
  const sum = c.allReduceSum([a, b]);
  say({ mean: mean.map((t) => t.arraySync()), sum: sum.map((t) => t.arraySync()) });

  const x = tf.tensor2d([[10 * r, 10 * r + 1]]);
  const gathered = c.allGather(x);
  const rowsOfR = tf.fill([r + 1, 2], r);
  const ragged = c.allGather(rowsOfR);
  say({ gather: gathered.arraySync(), ragged: ragged.arraySync() });
  const issued = c.collectivesIssued;
  const same = c.allGather(x, { sameShape: true });
  say({ gatherSameShape: same.arraySync(), sameShapeCollectives: c.collectivesIssued - issued });

  // loss_r = sum(w_r * gathered), w_r[i, j] = (r + 1) * (i + 1) + j: d(sum_r loss_r)/dx_r = sum_s w_s[rows of r]
  const rows = c.worldSize * 2;
  const w = tf.tensor2d(
    Array.from({ length: rows }, (_, i) => [0, 1, 2].map((j) => (r + 1) * (i + 1) + j)),
  );
  const mine = tf.tensor2d([
    [r, r + 1, r + 2],
    [1, 2, 3],
  ]);
  const grad = tf.grad((t: tf.Tensor) => c.allGatherWithGradient(t).mul(w).sum())(mine);
  const forward = c.allGatherWithGradient(mine);
  const gradSame = tf.grad((t: tf.Tensor) =>
    c.allGatherWithGradient(t, { sameShape: true }).mul(w).sum(),
  )(mine);
  say({
    gradient: grad.arraySync(),
    gatheredForGradient: forward.arraySync(),
    gradientSameShape: gradSame.arraySync(),
  });

  const toSend = r === 0 ? tf.tensor1d([3.5, -2.5, 7]) : tf.zeros([3]);
  const toSendInt = tf.tensor1d([r * 100, r], 'int32');
  const sent = c.broadcast(toSend);
  const sentInt = c.broadcast(toSendInt, c.worldSize - 1);
  say({ broadcast: sent.arraySync(), broadcastInt: sentInt.arraySync() });

  // rank 0 works longer than the collectives' timeout while the others wait
  const t0 = Date.now();
  const answer = await c.waitFor(async () => {
    await new Promise((done) => setTimeout(done, 1000 * (spec.timeoutSeconds ?? 2) + 500));
    return 42;
  });
  say({ waitFor: answer ?? null, waitedMs: Date.now() - t0 });
  try {
    await c.waitFor(() => {
      throw new Error('evaluation failed');
    });
    say({ waitForFailure: null });
  } catch (e) {
    say({ waitForFailure: (e as { code?: string }).code ?? (e as Error).message });
  }

  tf.dispose([a, b, x, gathered, same, rowsOfR, ragged, w, mine, grad, gradSame, forward]);
  tf.dispose([toSend, toSendInt, sent, sentInt, ...mean, ...sum]);
  say({ leaked: tf.memory().numTensors - before });
}

async function die(c: TfCollectives): Promise<void> {
  tf.dispose(c.allReduceSum([tf.ones([4])]));
  say({ event: 'ready' });
  if (c.rank !== 0) {
    setInterval(() => {}, 1 << 30); // the victim: waits to be killed
    return;
  }
  const line = createInterface({ input: process.stdin });
  await new Promise((go) => line.once('line', go));
  line.close();
  const t0 = Date.now();
  try {
    c.allReduceSum([tf.ones([4])]);
    say({ error: null });
  } catch (e) {
    say({ error: errorReport(e), elapsedMs: Date.now() - t0 });
  }
  const t1 = Date.now();
  try {
    c.allReduceSum([tf.ones([4])]); // after the abort: fails at once
  } catch (e) {
    say({ again: errorReport(e), elapsedMs: Date.now() - t1 });
  }
}

const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[xs.length >> 1]!;

/** Milliseconds of `op` (median of `runs` after 2 warm-ups); what it returns is disposed. */
function time(op: () => tf.TensorContainer, runs = 10): number {
  const ms: number[] = [];
  for (let i = 0; i < runs + 2; i++) {
    const t0 = performance.now();
    tf.dispose(op());
    if (i >= 2) ms.push(performance.now() - t0);
  }
  return median(ms);
}

/** ResNet-18's gradient (11.2 M floats) and a 2.8 M one, all-reduced; a 128x128 gather. */
function bench(c: TfCollectives): void {
  for (const floats of [11_200_000, 2_800_000]) {
    const flat = tf.randomUniform([floats]);
    // the same floats as 62 tensors (a ResNet-18's parameter count), fused by allReduceMean
    const parts = tf.split(flat, [
      ...new Array<number>(61).fill(Math.floor(floats / 62)),
      floats - 61 * Math.floor(floats / 62),
    ]);
    say({ op: 'allReduceMean', floats, tensors: 1, medianMs: time(() => c.allReduceMean([flat])) });
    say({ op: 'allReduceMean', floats, tensors: 62, medianMs: time(() => c.allReduceMean(parts)) });
    tf.dispose([flat, ...parts]);
  }
  const keys = tf.randomUniform([128, 128]);
  say({ op: 'allGather', shape: [128, 128], medianMs: time(() => c.allGather(keys), 50) });
  keys.dispose();
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]!) as WorkerSpec;
  let c: TfCollectives;
  try {
    c = await joinCluster({
      cluster: spec.workers,
      rank: spec.rank,
      configHash: spec.configHash ?? 'the experiment',
      timeoutSeconds: spec.timeoutSeconds ?? 10,
      joinTimeoutSeconds: spec.joinTimeoutSeconds ?? 60,
      healthCheckMs: 2000,
    });
  } catch (e) {
    say({ joined: false, error: errorReport(e) });
    process.exit(0);
  }
  say({ joined: true });
  if (spec.scenario === 'ops') await ops(c, spec);
  else if (spec.scenario === 'die') await die(c);
  else if (spec.scenario === 'bench') bench(c);
  if (spec.scenario !== 'die' || spec.rank === 0) {
    if (spec.scenario !== 'die') c.barrier(); // keep every server up until all are done
    say({ done: true });
    process.exit(0);
  }
}

void main();
