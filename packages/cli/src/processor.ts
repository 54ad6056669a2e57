import 'reflect-metadata';
import { join } from 'node:path';
import type { SandboxedJob } from 'bullmq';
import { initBackend } from '@contrast/backend';
import { expandStudy, loadStudy, runStudyConfig, type StudyResult } from '@contrast/study';
import { createCatalog } from '@contrast/trainer';
import { builtinPlugins } from './plugins.js';
import type { StudyJobData } from './queue.js';

// the worker that started this process is gone (killed): stop too, the job will be retried
process.on('disconnect', () => process.exit(1));

/** BullMQ sandboxed processor: trains one configuration of a study in its fixed run folder. */
export default async function processStudyJob(
  job: SandboxedJob<StudyJobData>,
): Promise<StudyResult> {
  await initBackend();
  const { studyFile, out, scale, runId } = job.data;
  const runs = expandStudy(loadStudy(studyFile), studyFile, { scale, runsDir: join(out, 'runs') });
  const run = runs.find((r) => r.id === runId);
  if (!run)
    throw new Error(`no configuration ${runId} in ${studyFile} (was the study file changed?)`);
  return runStudyConfig(run, createCatalog(builtinPlugins()), {
    progress: false,
    runPath: join(out, 'runs', `${run.config.name}-${run.id}`),
    log: (l) => process.stderr.write(`[job ${job.id}] ${l}\n`),
  });
}
