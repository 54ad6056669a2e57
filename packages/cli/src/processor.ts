import 'reflect-metadata';
import { WaitingError, type SandboxedJob } from 'bullmq';
import { initBackend } from '@contrast/backend';
import { StudyRunStopped, type StudyResult } from '@contrast/study';
import { runOneConfig } from './parallel.js';
import { catalogForStudy } from './plugins.js';
import type { StudyJobData } from './queue.js';
import { signalExitCode } from './exit-codes.js';
import { StopSignals } from './signals.js';

// the worker that started this process is gone (killed): stop too, the job will be retried
process.on('disconnect', () => process.exit(1));

let running = false;
/**
 * Signals sent to this child directly (a terminal's Ctrl-C reaches the whole
 * process group, systemd signals every process of the unit): a running job
 * stops cleanly as when its worker cancels it, and the child then ends (the
 * worker forks a new one for its next job); a second signal aborts. A child
 * signalled between jobs ends at once.
 */
const signals = new StopSignals({
  onStop: (s) => {
    if (!running) process.exit(signalExitCode(s));
  },
}).install();

/**
 * BullMQ sandboxed processor: trains one configuration of a study in its fixed
 * run folder. Stopped (the worker cancels the job on SIGTERM, or this process
 * is signalled), the run checkpoints and is marked interrupted, then the job is
 * moved back to the waiting list (BullMQ's moveToWait + WaitingError pattern):
 * not a failed attempt, and another worker resumes it from the checkpoint.
 */
export default async function processStudyJob(
  job: SandboxedJob<StudyJobData>,
  token?: string,
  cancel?: AbortSignal,
): Promise<StudyResult> {
  await initBackend();
  const { studyFile, out, scale, runId } = job.data;
  const log = (l: string) => process.stderr.write(`[job ${job.id}] ${l}\n`);
  running = true;
  try {
    return await runOneConfig(studyFile, await catalogForStudy(studyFile), {
      id: runId,
      out,
      scale,
      log,
      shouldStop: () => signals.requested || (cancel?.aborted ?? false),
    });
  } catch (e) {
    if (!(e instanceof StudyRunStopped)) throw e;
    const why = signals.requested ? String(signals.signal.reason) : String(cancel?.reason);
    log(`stopped (${why}) after step ${e.steps}, checkpointed; back to the queue`);
    await job.moveToWait(token);
    // signalled itself: end once BullMQ has reported the job moved (its message is queued first)
    if (signals.requested) setTimeout(() => process.exit(signals.exitCode), 1000);
    throw new WaitingError();
  } finally {
    running = false;
  }
}
