import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { appendFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StateError, type Catalog } from '@contrast/core';
import {
  expandStudy,
  finishStudyRun,
  loadStudy,
  openStudyRun,
  prepareStudy,
  readResults,
  reportStudy,
  runStudyConfig,
  studyChildOptions,
  type StudyResult,
} from '@contrast/study';

/** A compiled file of this package, also when this module runs from its sources (tests). */
export function compiledFile(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return basename(here) === 'src' ? join(here, '..', 'dist', name) : join(here, name);
}

/** The fixed run folder of a configuration (so a retried or resumed one finds its checkpoints). */
export const configRunPath = (out: string, name: string, id: string) =>
  join(out, 'runs', `${name}-${id}`);

/** `study run-config`: trains one configuration of a study in this process. */
export async function runOneConfig(
  file: string,
  catalog: Catalog,
  options: { id: string; out: string; scale: number; log?: (l: string) => void },
): Promise<StudyResult> {
  const runs = expandStudy(loadStudy(file), file, {
    scale: options.scale,
    runsDir: join(options.out, 'runs'),
  });
  const run = runs.find((r) => r.id === options.id);
  if (!run) throw new StateError(`no configuration ${options.id} in ${file}`);
  return runStudyConfig(run, catalog, {
    progress: false,
    runPath: configRunPath(options.out, run.config.name, run.id),
    ...studyChildOptions(options.out),
    ...(options.log ? { log: options.log } : {}),
  });
}

/**
 * Runs a study N configurations at a time, each in its own child process
 * (`contrast study run-config`), then reports. Results are recorded as each
 * child finishes; finished configurations are skipped on a re-run.
 */
/**
 * The environment of a child when `parallel` of them share the machine: each
 * gets cores / parallel TensorFlow intra-op threads (at least 1) and one inter-op
 * thread, so N children do not oversubscribe the cores. A thread count the user
 * set in the environment is kept.
 */
export function childThreadEnv(
  parallel: number,
  env: NodeJS.ProcessEnv = process.env,
  cores = availableParallelism(),
): NodeJS.ProcessEnv {
  const intra = String(Math.max(1, Math.floor(cores / Math.max(1, parallel))));
  return {
    ...env,
    TF_NUM_INTRAOP_THREADS: env.TF_NUM_INTRAOP_THREADS || intra,
    TF_NUM_INTEROP_THREADS: env.TF_NUM_INTEROP_THREADS || '1',
  };
}

export async function runStudyParallel(
  file: string,
  catalog: Catalog,
  options: { parallel: number; out?: string; scale?: number; log?: (l: string) => void },
): Promise<{ outDir: string; results: StudyResult[]; failed: string[]; reportFiles: string[] }> {
  const log = options.log ?? ((l) => console.error(l));
  const scale = options.scale ?? 1;
  const { study, outDir, runs } = prepareStudy(file, catalog, options);
  const parent = await openStudyRun(study, outDir, runs, log);
  const done = new Set(readResults(outDir).map((r) => r.id));
  const todo = runs.filter((r) => !done.has(r.id));
  const bin = compiledFile('bin.js');
  const failed: string[] = [];
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < todo.length) {
      const run = todo[next++]!;
      log(`${run.series} ${run.xLabel ?? run.k}: training in a child process`);
      const args = [
        bin,
        'study',
        'run-config',
        resolve(file),
        '--id',
        run.id,
        '--out',
        outDir,
        '--scale',
        String(scale),
      ];
      const { code, stdout, stderr } = await new Promise<{
        code: number;
        stdout: string;
        stderr: string;
      }>((res) => {
        const child = spawn(process.execPath, args, {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: childThreadEnv(options.parallel),
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.on('exit', (c) => res({ code: c ?? 1, stdout: out, stderr: err }));
      });
      const last = stdout.trim().split('\n').pop() ?? '';
      if (code === 0 && last.startsWith('{')) {
        const record = JSON.parse(last) as StudyResult;
        appendFileSync(join(outDir, 'results.jsonl'), `${JSON.stringify(record)}\n`);
        log(`${run.series} ${run.xLabel ?? run.k}: kNN ${(100 * record.knn).toFixed(2)}%`);
      } else {
        failed.push(run.id);
        log(
          `${run.series} ${run.xLabel ?? run.k}: failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`,
        );
      }
    }
  };
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(options.parallel, todo.length)) }, one),
  );
  const { results, reportFiles } = await reportStudy(study, outDir, runs);
  await finishStudyRun(parent, reportFiles, log);
  return { outDir, results, failed, reportFiles };
}
