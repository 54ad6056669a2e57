import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { DistributedError, type Collectives } from '@contrast/core';
import type { TrainingSession } from './session.js';

/** BatchNorm's running statistics, by the names BatchNorm gives them. */
const RUNNING = /(^|\/)running_(mean|var)$/;

/**
 * The trainer's side of a data-parallel run (N workers, one replica each):
 * rank 0 writes the run folder, checkpoints, tracking and evaluation; every
 * worker keeps the same weights (the gradients are averaged in the step) and
 * its own BatchNorm running statistics, which `sync` averages before rank 0
 * reads them. Running statistics follow their batch statistics linearly (an
 * EMA), so the workers' mean is exactly what one process with SplitBatchNorm
 * (model.bnSplits = N) holds: evaluation and checkpoints use that mean.
 */
export class WorkerGroup {
  constructor(
    private readonly session: TrainingSession,
    readonly collectives: Collectives,
  ) {}

  /** True on the worker that writes (rank 0). */
  get writes(): boolean {
    return this.collectives.rank === 0;
  }

  /**
   * Averages the running statistics over workers (encoder, key encoder,
   * heads), then checks that every worker holds the same state (a digest of
   * every tensor a checkpoint saves, gathered and compared).
   * @throws DistributedError naming the workers whose state differs from rank 0's.
   */
  sync(): void {
    const running = this.runningStatistics();
    if (running.length > 0) {
      const mean = this.collectives.allReduceMean(running);
      running.forEach((v, i) => v.assign(mean[i]!));
      tf.dispose(mean);
    }
    this.checkSameState();
  }

  /**
   * Rank 0's writes and evaluation at this point (`work`: the hooks), while
   * the others run their own hooks and wait for rank 0 (a long timeout, not a
   * step's); a failure on rank 0 reaches every worker.
   */
  async around(work: () => void): Promise<void> {
    if (this.writes) {
      await this.collectives.waitFor(work);
      return;
    }
    work();
    await this.collectives.waitFor(() => undefined);
  }

  private runningStatistics(): tf.Variable[] {
    const out = new Set<tf.Variable>();
    const add = (name: string, t: tf.Tensor) => {
      if (RUNNING.test(name) && t instanceof tf.Variable) out.add(t);
    };
    for (const [name, v] of this.session.encoder.namedVariables()) add(name, v);
    for (const part of Object.values(this.session.method.state())) {
      for (const [name, t] of Object.entries(part.tensors)) add(name, t);
    }
    return [...out];
  }

  private checkSameState(): void {
    const { tensors } = this.session.stateBundle();
    const hash = createHash('sha256');
    for (const name of Object.keys(tensors).sort()) {
      const t = tensors[name]!;
      hash.update(name);
      hash.update(Buffer.from((t.dataSync() as Float32Array | Int32Array).buffer));
    }
    const digest = hash.digest();
    // 16 words of 16 bits: exact in float32, the type every collective carries
    const words = Float32Array.from({ length: 16 }, (_, i) => digest.readUInt16BE(2 * i));
    const all = tf.tidy(() =>
      this.collectives.allGather(tf.tensor2d(words, [1, 16]), { sameShape: true }),
    );
    const rows = all.arraySync() as number[][];
    all.dispose();
    const differ = rows
      .map((row, rank) => (row.every((w, i) => w === rows[0]![i]) ? -1 : rank))
      .filter((r) => r >= 0);
    if (differ.length > 0) {
      throw new DistributedError(
        `worker${differ.length > 1 ? 's' : ''} ${differ.join(', ')} hold${differ.length > 1 ? '' : 's'} other weights than rank 0`,
        {
          hint: 'every worker must run the same Contrast version, experiment and thread-independent kernels; resume from the last checkpoint',
        },
      );
    }
  }
}
