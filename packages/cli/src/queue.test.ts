import { describe, expect, it } from 'vitest';
import { finishedJob, jobId } from './queue.js';

/**
 * A stand-in for BullMQ's Queue.getJob over a job's timeline: each read moves
 * time on by one; a job object keeps the fields it was read with, while its
 * getState answers with the state at the time it is called (as Redis does).
 */
function queueOf(...timeline: { state: string; returnvalue?: unknown; failedReason?: string }[]) {
  const calls: string[] = [];
  let now = 0;
  const at = () => timeline[Math.min(now, timeline.length - 1)]!;
  return {
    calls,
    getJob: (id: string) => {
      calls.push(id);
      const read = at();
      now++;
      return Promise.resolve({
        returnvalue: read.returnvalue ?? null,
        failedReason: read.failedReason ?? '',
        getState: () => Promise.resolve(at().state),
      });
    },
  };
}

describe('finishedJob', () => {
  it('a job read while active that completes before its state is read gives its result, never null', async () => {
    const result = { id: 'abc', knn: 0.8 };
    // read 1: active (no return value yet); its getState already says completed; read 2: completed
    const q = queueOf({ state: 'active' }, { state: 'completed', returnvalue: result });
    const end = await finishedJob(q as never, 'abc');
    expect(end).toEqual({ state: 'completed', result });
    expect(q.calls).toEqual([jobId('abc'), jobId('abc')]);
  });

  it('a failed job gives the reason of its last attempt; a waiting or missing one gives undefined', async () => {
    const failed = queueOf(
      { state: 'active' },
      { state: 'failed', failedReason: 'Fashion-MNIST not found' },
    );
    expect(await finishedJob(failed as never, 'x')).toEqual({
      state: 'failed',
      reason: 'Fashion-MNIST not found',
    });
    expect(
      await finishedJob(queueOf({ state: 'waiting' }, { state: 'waiting' }) as never, 'x'),
    ).toBeUndefined();
    const missing = { getJob: () => Promise.resolve(undefined) };
    expect(await finishedJob(missing as never, 'x')).toBeUndefined();
  });

  it('a completed job whose return value is not there (yet) stays pending', async () => {
    const q = queueOf({ state: 'completed' }, { state: 'completed' });
    expect(await finishedJob(q as never, 'x')).toBeUndefined();
  });
});
