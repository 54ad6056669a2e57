import { appendFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { ConfigError, type Catalog } from '@contrast/core';
import {
  finishStudyRun,
  openStudyRun,
  prepareStudy,
  isDone,
  probeMatches,
  recordResult,
  resultsById,
  type ProbeSettings,
  reportStudy,
  StudyRunStopped,
  type StudyResult,
} from '@contrast/study';
import { compiledFile } from './parallel.js';

/**
 * Studies across machines on BullMQ (Redis): one job per configuration, job id
 * = config hash, so submitting twice never duplicates work. Workers run one job
 * at a time in a sandboxed child process; runs live in the study's folder on a
 * shared file system, so a job whose worker died is retried by another worker
 * and resumes from the run's last checkpoint.
 */
export const QUEUE_NAME = 'contrast-studies';

export interface StudyJobData {
  studyFile: string;
  out: string;
  scale: number;
  runId: string;
}

export const jobId = (runId: string) => `cfg-${runId}`;

/** The reason a worker cancels a job whose Redis lock it lost (the processor then leaves the job alone). */
export const JOB_LOCK_LOST = 'job lock lost';

/** redis://[:password@]host:port[/db] -> ioredis options. */
export function redisConnection(url: string): RedisOptions & { host: string; port: number } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError('--queue', `'${url}' is not a URL`, {
      hint: 'e.g. redis://127.0.0.1:6379',
    });
  }
  if (u.protocol !== 'redis:') {
    throw new ConfigError('--queue', `'${url}' is not a redis:// URL`, {
      hint: 'e.g. redis://127.0.0.1:6379',
    });
  }
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.pathname.length > 1 ? { db: Number(u.pathname.slice(1)) } : {}),
    maxRetriesPerRequest: null,
  };
}

/** Fails fast, with the address and the fix, when Redis does not answer. */
export async function checkRedis(url: string): Promise<void> {
  const c = redisConnection(url);
  const client = new Redis({
    ...c,
    maxRetriesPerRequest: 0,
    connectTimeout: 3000,
    lazyConnect: true,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
  } catch (e) {
    throw new ConfigError(
      '--queue',
      `Redis at ${c.host}:${c.port} is unreachable (${(e as Error).message})`,
      {
        hint: 'start redis-server there, or run the study on this machine without --queue',
      },
    );
  } finally {
    client.disconnect();
  }
}

/** Submits every configuration not finished yet, waits for all, then writes the report. */
export async function runStudyOnQueue(
  file: string,
  catalog: Catalog,
  options: {
    queue: string;
    out?: string;
    scale?: number;
    seeds?: readonly number[];
    attempts?: number;
    log?: (l: string) => void;
    /** Stops waiting for the workers (the jobs stay queued). */
    signal?: AbortSignal;
  },
): Promise<{
  outDir: string;
  results: StudyResult[];
  failed: { id: string; reason: string }[];
  reportFiles: string[];
}> {
  const log = options.log ?? ((l) => console.error(l));
  await checkRedis(options.queue);
  const { study, outDir, runs, reported } = prepareStudy(file, catalog, options);
  const parent = await openStudyRun(study, outDir, runs, log);
  const recorded = resultsById(outDir);
  const queue = new Queue<StudyJobData, StudyResult>(QUEUE_NAME, {
    connection: redisConnection(options.queue),
  });
  try {
    const todo = runs.filter((r) => !isDone(recorded, r));
    const data = (runId: string): StudyJobData => ({
      studyFile: resolve(file),
      out: outDir,
      scale: options.scale ?? 1,
      runId,
    });
    const n = await submitConfigs(queue, todo, data, options.attempts ?? 3);
    log(
      `${n.added} configurations queued on ${options.queue}, ${n.requeued} failed ones queued again, ` +
        (n.reprobed ? `${n.reprobed} finished ones queued again for the linear probe, ` : '') +
        `${n.kept} already queued or running (${runs.length - todo.length} already done)`,
    );
    const failed = await waitForJobs(
      queue,
      todo.map((r) => r.id),
      outDir,
      log,
      options.signal,
    );
    const { results, reportFiles } = await reportStudy(study, outDir, reported);
    await finishStudyRun(parent, reportFiles, log, results);
    if (failed.length) {
      appendFileSync(
        reportFiles[0]!,
        `\nFailed after their retries (${failed.length}):\n\n${failed.map((f) => `- ${f.id}: ${f.reason}`).join('\n')}\n`,
      );
    }
    return { outDir, results, failed, reportFiles };
  } finally {
    await queue.close();
  }
}

/**
 * Waits until every job is completed (its result appended to results.jsonl
 * once) or failed after its retries; returns the failed ones with their
 * reasons. Throws StudyRunStopped when `signal` aborts (the jobs stay queued).
 */
async function waitForJobs(
  queue: Queue<StudyJobData, StudyResult>,
  ids: readonly string[],
  outDir: string,
  log: (l: string) => void,
  signal: AbortSignal | undefined,
): Promise<{ id: string; reason: string }[]> {
  const failed: { id: string; reason: string }[] = [];
  const pending = new Set(ids);
  let last = '';
  while (pending.size > 0) {
    if (signal?.aborted) {
      log(
        `stopped waiting (${String(signal.reason)}): the jobs stay queued, workers keep running them`,
      );
      throw new StudyRunStopped(undefined);
    }
    for (const id of [...pending]) {
      const end = await finishedJob(queue, id);
      if (end?.state === 'completed') {
        recordResult(outDir, end.result); // replaces the line of the same id: never a duplicate
        pending.delete(id);
      } else if (end?.state === 'failed') {
        failed.push({ id, reason: end.reason });
        pending.delete(id);
      }
    }
    const counts = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed');
    const line = `queue: ${JSON.stringify(counts)}`;
    if (line !== last) log(line);
    last = line;
    if (pending.size > 0) await new Promise((r) => setTimeout(r, 500));
  }
  return failed;
}

/**
 * How a configuration's job ended: its result once completed, its reason once
 * failed after its retries; undefined while it is waiting, delayed or active.
 * The job is read again after its state: a job read while active and completed
 * before `getState` still carries the active job's `returnvalue` (null), which
 * must not become a line of results.jsonl.
 */
export async function finishedJob(
  queue: Pick<Queue<StudyJobData, StudyResult>, 'getJob'>,
  runId: string,
): Promise<
  { state: 'completed'; result: StudyResult } | { state: 'failed'; reason: string } | undefined
> {
  const state = await (await queue.getJob(jobId(runId)))?.getState();
  if (state !== 'completed' && state !== 'failed') return undefined;
  const job = await queue.getJob(jobId(runId));
  if (!job) return undefined;
  if (state === 'failed') return { state, reason: job.failedReason };
  return job.returnvalue ? { state, result: job.returnvalue } : undefined;
}

/**
 * Queues every configuration not done yet, one job each (job id = config hash).
 * A configuration whose job failed (after its retries) is queued again with
 * fresh attempts, so fixing the cause and re-running the study runs it; one
 * that is waiting, delayed, active or completed is left as it is, never
 * duplicated. BullMQ ignores an add with an existing job id, hence the retry.
 * A completed job without the linear probe the study now asks for (or with
 * other settings) is queued again (`reprobed`): its training is found finished
 * in the run folder, only the probe runs.
 */
export async function submitConfigs(
  queue: Queue<StudyJobData, StudyResult>,
  todo: readonly { id: string; config: { name: string }; linear?: ProbeSettings }[],
  data: (runId: string) => StudyJobData,
  attempts: number,
): Promise<{ added: number; requeued: number; reprobed: number; kept: number }> {
  const n = { added: 0, requeued: 0, reprobed: 0, kept: 0 };
  for (const run of todo) {
    const existing = await queue.getJob(jobId(run.id));
    const state = existing ? await existing.getState() : 'unknown';
    const unprobed =
      state === 'completed' && !!run.linear && !probeMatches(existing?.returnvalue, run.linear);
    if (existing && (state === 'failed' || unprobed)) {
      await existing.updateData(data(run.id)); // this submission's study file and folder
      await existing.retry(state as 'failed' | 'completed', {
        resetAttemptsMade: true,
        resetAttemptsStarted: true,
      });
      n[unprobed ? 'reprobed' : 'requeued']++;
    } else if (existing && state !== 'unknown') {
      n.kept++;
    } else {
      await queue.add(run.config.name, data(run.id), {
        jobId: jobId(run.id),
        attempts,
        backoff: { type: 'fixed', delay: 1000 },
        removeOnComplete: false,
        removeOnFail: false,
      });
      n.added++;
    }
  }
  return n;
}

/** A configuration's job: its state and attempts so far (undefined when never queued). */
export async function queuedJob(
  url: string,
  runId: string,
): Promise<{ state: string; attemptsMade: number; failedReason?: string } | undefined> {
  const queue = new Queue(QUEUE_NAME, { connection: redisConnection(url) });
  try {
    const job = await queue.getJob(jobId(runId));
    if (!job) return undefined;
    return {
      state: await job.getState(),
      attemptsMade: job.attemptsMade,
      ...(job.failedReason ? { failedReason: job.failedReason } : {}),
    };
  } finally {
    await queue.close();
  }
}

/** Counts by state of a study's jobs. */
export async function studyStatus(
  file: string,
  catalog: Catalog,
  options: { queue: string; out?: string; scale?: number; seeds?: readonly number[] },
): Promise<Record<string, string[]>> {
  await checkRedis(options.queue);
  const { runs } = prepareStudy(file, catalog, options);
  const queue = new Queue(QUEUE_NAME, { connection: redisConnection(options.queue) });
  try {
    const by: Record<string, string[]> = {};
    for (const run of runs) {
      const job = await queue.getJob(jobId(run.id));
      const state = job ? await job.getState() : 'not queued';
      (by[state] ??= []).push(
        `${run.series} ${run.xLabel ?? run.k}${run.seed ? ` seed ${run.seed}` : ''} (${run.id})`,
      );
    }
    return by;
  } finally {
    await queue.close();
  }
}

/**
 * Stops a worker cleanly: it takes no new job, its running job is cancelled
 * (the run checkpoints and the job goes back to the waiting list for another
 * worker, see processor.ts), then its connections and child process close.
 */
export async function stopWorker(
  worker: Worker<StudyJobData, StudyResult>,
  reason: string,
): Promise<void> {
  const closing = worker.close(); // first: a job moved back to wait must not fetch the next one
  worker.cancelAllJobs(reason);
  await closing;
}

/** A worker: one job at a time, each in a sandboxed child process (processor.js). */
export async function startWorker(options: {
  queue: string;
  lockSeconds?: number;
  log?: (l: string) => void;
}): Promise<Worker<StudyJobData, StudyResult>> {
  const log = options.log ?? ((l) => console.error(l));
  await checkRedis(options.queue);
  const lockDuration = (options.lockSeconds ?? 30) * 1000;
  const processor = compiledFile('processor.js');
  const worker = new Worker<StudyJobData, StudyResult>(QUEUE_NAME, processor, {
    connection: redisConnection(options.queue),
    concurrency: 1,
    lockDuration,
    stalledInterval: lockDuration,
    maxStalledCount: 3,
    // the job's child writes to this worker's stdout and stderr directly (BullMQ pipes them
    // otherwise): on a terminal, pipe or file it can then hide TensorFlow's start-up lines
    workerForkOptions: { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  });
  worker.on('active', (job: Job) =>
    log(`[worker ${process.pid}] active ${job.id} (attempt ${job.attemptsMade + 1})`),
  );
  worker.on('completed', (job: Job) => log(`[worker ${process.pid}] completed ${job.id}`));
  worker.on('failed', (job: Job | undefined, err: Error) =>
    log(`[worker ${process.pid}] failed ${job?.id}: ${err.message}`),
  );
  worker.on('error', (err: Error) => log(`[worker ${process.pid}] error: ${err.message}`));
  stopOnLostLocks(worker, lockDuration, log);
  return worker;
}

/**
 * A job whose Redis lock this worker lost may already run on another worker:
 * its child is told to stop (checkpoint, then leave the job alone; the run
 * folder's lock keeps the two apart meanwhile). The lock is lost when Redis
 * refuses a renewal ('lockRenewalFailed'), or when no renewal was confirmed for
 * a whole lock duration (Redis unreachable: BullMQ's renewal then waits for the
 * connection and reports nothing, while the lock expires on the server).
 */
function stopOnLostLocks(
  worker: Worker<StudyJobData, StudyResult>,
  lockDuration: number,
  log: (l: string) => void,
): void {
  const renewed = new Map<string, number>(); // job id -> last confirmed lock time (ms)
  const lost = (id: string, why: string) => {
    // a job that left this worker without completing or failing (moved to delayed) is not cancelled
    if (!renewed.delete(id) || !worker.cancelJob(id, JOB_LOCK_LOST)) return;
    log(`[worker ${process.pid}] ${why}: stopping ${id}, another worker may have it`);
  };
  worker.on('active', (job: Job) => renewed.set(job.id!, Date.now()));
  for (const done of ['completed', 'failed'] as const) {
    worker.on(done, (job: Job | undefined) => {
      if (job?.id) renewed.delete(job.id);
    });
  }
  worker.on('locksRenewed', ({ jobIds }: { jobIds: string[] }) => {
    for (const id of jobIds) if (renewed.has(id)) renewed.set(id, Date.now());
  });
  worker.on('lockRenewalFailed', (ids: string[]) => {
    for (const id of ids) lost(id, 'Redis refused to renew the job lock');
  });
  const check = setInterval(() => {
    for (const [id, at] of renewed) {
      if (Date.now() - at > lockDuration)
        lost(id, `job lock not renewed for ${lockDuration / 1000} s`);
    }
  }, lockDuration / 4).unref();
  worker.on('closed', () => clearInterval(check));
}
