import 'reflect-metadata';
import type { SandboxedJob } from 'bullmq';
import { initBackend } from '@contrast/backend';
import type { StudyResult } from '@contrast/study';
import { runOneConfig } from './parallel.js';
import { catalogForStudy } from './plugins.js';
import type { StudyJobData } from './queue.js';

// the worker that started this process is gone (killed): stop too, the job will be retried
process.on('disconnect', () => process.exit(1));

/** BullMQ sandboxed processor: trains one configuration of a study in its fixed run folder. */
export default async function processStudyJob(
  job: SandboxedJob<StudyJobData>,
): Promise<StudyResult> {
  await initBackend();
  const { studyFile, out, scale, runId } = job.data;
  return runOneConfig(studyFile, await catalogForStudy(studyFile), {
    id: runId,
    out,
    scale,
    log: (l) => process.stderr.write(`[job ${job.id}] ${l}\n`),
  });
}
