import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StateError, type Catalog } from '@contrast/core';
import {
  configRunPath,
  expandStudy,
  finishStudyRun,
  loadStudy,
  openStudyRun,
  prepareStudy,
  isDone,
  recordResult,
  reportStudy,
  resultsById,
  runStudyConfig,
  runTag,
  stopStudyRun,
  studyChildOptions,
  StudyRunStopped,
  type StudyResult,
} from '@contrast/study';
import { signalExitCode } from './exit-codes.js';
import { STOP_SIGNALS, type StopMessage } from './signals.js';

export { configRunPath } from '@contrast/study';

/** A compiled file of this package, also when this module runs from its sources (tests). */
export function compiledFile(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return basename(here) === 'src' ? join(here, '..', 'dist', name) : join(here, name);
}

/**
 * `study run-config`: trains one configuration of a study in this process, in
 * its fixed run folder; throws StudyRunStopped when `shouldStop` stopped it.
 */
export async function runOneConfig(
  file: string,
  catalog: Catalog,
  options: {
    id: string;
    out: string;
    scale: number;
    log?: (l: string) => void;
    shouldStop?: () => boolean;
  },
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
    ...(options.shouldStop ? { shouldStop: options.shouldStop } : {}),
  });
}

export { isStopMessage, type StopMessage } from './signals.js';

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

/** How a study parent is told to stop: `signal` (stop cleanly), `aborting` (kill now). */
export interface StopControl {
  readonly signal: AbortSignal;
  readonly aborting: AbortSignal;
}

/**
 * Runs a study N configurations at a time, each in its own child process
 * (`contrast study run-config`, in its fixed run folder), then reports. Results
 * are recorded as each child finishes; finished configurations are skipped on a
 * re-run. When `stop.signal` aborts, running children are told over IPC to stop
 * cleanly (checkpoint, run marked interrupted), no new one starts, the parent
 * MLflow run is marked KILLED and StudyRunStopped is thrown; the children that
 * were stopped resume on a re-run. When `stop.aborting` aborts, children are killed.
 */
export async function runStudyParallel(
  file: string,
  catalog: Catalog,
  options: {
    parallel: number;
    out?: string;
    scale?: number;
    seeds?: readonly number[];
    log?: (l: string) => void;
    stop?: StopControl;
  },
): Promise<{ outDir: string; results: StudyResult[]; failed: string[]; reportFiles: string[] }> {
  const log = options.log ?? ((l) => console.error(l));
  const { study, outDir, runs, reported } = prepareStudy(file, catalog, options);
  const parent = await openStudyRun(study, outDir, runs, log);
  const recorded = resultsById(outDir);
  const todo = runs.filter((r) => !isDone(recorded, r));
  const failed: string[] = [];
  let stopped = false;
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < todo.length && !options.stop?.signal.aborted) {
      const run = todo[next++]!;
      const tag = runTag(run);
      log(`${tag}: training in a child process`);
      const args = ['study', 'run-config', resolve(file), '--id', run.id, '--out', outDir];
      const child = await runChild(
        [...args, '--scale', String(options.scale ?? 1)],
        childThreadEnv(options.parallel),
        join(outDir, 'logs', `${run.config.name}-${run.id}.log`),
        options.stop,
      );
      const last = child.stdout.trim().split('\n').pop() ?? '';
      if (child.code === 0 && last.startsWith('{')) {
        const record = JSON.parse(last) as StudyResult;
        recordResult(outDir, record);
        const probed =
          record.linear !== undefined ? `, linear ${(100 * record.linear).toFixed(2)}%` : '';
        log(`${tag}: kNN ${(100 * record.knn).toFixed(2)}%${probed}`);
      } else if (child.stopped) {
        stopped = true;
        log(`${tag}: stopped (exit ${child.code}), checkpointed in its run folder`);
      } else {
        failed.push(run.id);
        const tail = child.stderr.trim().split('\n').slice(-3).join(' | ');
        log(`${tag}: failed (exit ${child.code}): ${tail} (log: ${child.logFile})`);
      }
    }
  };
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(options.parallel, todo.length)) }, one),
  );
  if (stopped || options.stop?.signal.aborted) {
    await stopStudyRun(parent, log);
    throw new StudyRunStopped(undefined);
  }
  const { results, reportFiles } = await reportStudy(study, outDir, reported);
  await finishStudyRun(parent, reportFiles, log, results);
  return { outDir, results, failed, reportFiles };
}

/** Exit statuses of a child that stopped on a signal (129, 130, 143). */
const STOPPED_CODES = new Set(STOP_SIGNALS.map(signalExitCode));

/**
 * One `contrast` child process with an IPC channel: stdout collected, stderr
 * appended to `logFile` (and returned: this run's part);
 * told to stop over IPC when `stop.signal` aborts, killed when `stop.aborting` aborts.
 * Resolves when the child has exited and its output is read.
 */
function runChild(
  args: string[],
  env: NodeJS.ProcessEnv,
  logFile: string,
  stop: StopControl | undefined,
): Promise<{ code: number; stdout: string; stderr: string; stopped: boolean; logFile: string }> {
  mkdirSync(dirname(logFile), { recursive: true });
  const from = existsSync(logFile) ? statSync(logFile).size : 0; // a re-run appends
  // stderr to a file opened for appending, not a pipe: the log outlives the run
  const logFd = openSync(logFile, 'a');
  return new Promise((res) => {
    const child: ChildProcess = spawn(process.execPath, [compiledFile('bin.js'), ...args], {
      stdio: ['ignore', 'pipe', logFd, 'ipc'],
      env,
    });
    closeSync(logFd); // the child has its own copy
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const send = () => {
      const signal = (stop?.signal.reason as NodeJS.Signals | undefined) ?? 'SIGTERM';
      if (child.connected) child.send({ cmd: 'contrast:stop', signal } satisfies StopMessage);
    };
    // again every second: a child still starting up has no message listener yet
    let resend: NodeJS.Timeout | undefined;
    const tell = () => {
      send();
      resend = setInterval(send, 1000);
    };
    const kill = () => child.kill('SIGKILL');
    child.on('error', (e) => (err += `${e.message}\n`)); // e.g. an IPC send to a child just gone
    stop?.signal.addEventListener('abort', tell);
    stop?.aborting.addEventListener('abort', kill);
    child.on('close', (c, signal) => {
      clearInterval(resend);
      stop?.signal.removeEventListener('abort', tell);
      stop?.aborting.removeEventListener('abort', kill);
      const code = c ?? (signal ? signalExitCode(signal) : 1);
      err = readFileSync(logFile).subarray(from).toString() + err;
      res({ code, stdout: out, stderr: err, stopped: STOPPED_CODES.has(code), logFile });
    });
  });
}
