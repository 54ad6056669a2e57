import 'reflect-metadata';
import { DelayedError, WaitingError, type SandboxedJob } from 'bullmq';
import { initBackend } from '@contrast/backend';
import { RunLockedError } from '@contrast/core';
import { StudyRunStopped, type StudyResult } from '@contrast/study';
import { runOneConfig } from './parallel.js';
import { catalogForStudy } from './plugins.js';
import { JOB_LOCK_LOST, type StudyJobData } from './queue.js';
import { signalExitCode } from './exit-codes.js';
import { StopSignals } from './signals.js';
import { dieWithParent } from './watchdog.js';

/*
 * This process must not outlive the worker that forked it: an orphan would keep
 * training into the run folder while another worker resumes the same job there.
 * Linux's PR_SET_PDEATHSIG needs native code (no maintained npm package offers
 * it), so two watchers in JavaScript:
 * - the IPC channel's 'disconnect' (BullMQ forks this process with
 *   child_process.fork; the channel closes when the worker dies, even by
 *   SIGKILL): exit at once, releasing the run folder's lock on the way out;
 * - a watchdog thread (watchdog.ts) that polls the parent pid on its own event
 *   loop, so it fires even when this thread is busy in a long synchronous step,
 *   and SIGKILLs this process if it is still there a second later.
 */
process.on('disconnect', () => process.exit(1));
dieWithParent();

/*
 * BullMQ's child reports an uncaught error to its parent from an async
 * 'uncaughtException' handler. With the parent gone that report fails, its
 * promise rejects, the rejection is raised as an uncaught exception again, and
 * so on, in microtasks that never yield to the event loop: the process spun at
 * full CPU and ignored SIGTERM (seen after a worker died as its job finished).
 * With no parent to report to, end instead; with one, report as before.
 */
process.on('unhandledRejection', (reason) => {
  if (!process.connected) process.exit(1);
  throw reason;
});

/** How long a job waits before trying again a run folder another live process writes (ms). */
const LOCKED_RETRY_MS = 2000;

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
 * Cancelled because the worker lost the job's Redis lock, it stops the same way
 * but leaves the job alone (it may be another worker's now). A run folder that
 * another live process writes (RunLockedError) delays the job by
 * LOCKED_RETRY_MS, without using up an attempt.
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
    if (e instanceof RunLockedError) {
      // not a failed attempt: the live writer finishes or dies (its lock then turns stale)
      log(`${e.message.split('\n')[0]}; trying again in ${LOCKED_RETRY_MS / 1000} s`);
      await job.moveToDelayed(Date.now() + LOCKED_RETRY_MS, token);
      throw new DelayedError();
    }
    if (!(e instanceof StudyRunStopped)) throw e;
    if (cancel?.reason === JOB_LOCK_LOST) {
      // another worker may own the job now: leave it alone (its retry resumes the checkpoint)
      const why = `stopped after step ${e.steps}, checkpointed: this worker lost the job's lock`;
      log(`${why}; the job is left to the worker that holds it, or to the stalled-job check`);
      throw new Error(why);
    }
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
