import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import {
  checkNames,
  ConfigError,
  parseWith,
  TrackingError,
  writeFileAtomic,
  type Catalog,
} from '@contrast/core';
import { evaluateRun, runExperiment } from '@contrast/trainer';
import {
  chooseTrackingUri,
  hasMlflowState,
  MlflowUploader,
  probeTrackingServer,
  RUN_DIR_TAG,
  systemTags,
} from '@contrast/tracking';
import { stringify } from 'yaml';
import { defaultStudyDir, expandStudy, loadStudy, runTag, type StudyRun } from './expand.js';
import type { Study } from './schema.js';
import { reportMeta } from './labels.js';
import { writeReport } from './report.js';
import {
  inSeriesOrder,
  isDone,
  readResults,
  recordResult,
  resultsById,
  type StudyResult,
} from './results.js';
import { recordStudySummary } from './summary.js';

export interface StudyOptions {
  /** Output folder (default runs/studies/<study name>, `-x<scale>` appended when scale is not 1). */
  out?: string;
  scale?: number;
  /** Only these of the study's seeds (default all). */
  seeds?: readonly number[];
  progress?: boolean;
  log?: (line: string) => void;
  /** Polled every step and between configurations; true stops the study cleanly. */
  shouldStop?: () => boolean;
}

/**
 * A configuration's run was stopped (a stop signal) before it finished: it is
 * checkpointed in its fixed folder, not recorded as a result, and a re-run of
 * the study resumes it. Named like the platform's AbortError.
 */
export class StudyRunStopped extends Error {
  override readonly name = 'AbortError';
  constructor(
    /** The stopped configuration's folder; undefined when the study stopped between two. */
    readonly runPath: string | undefined,
    readonly steps = 0,
  ) {
    super(
      runPath
        ? `stopped after step ${steps}; ${runPath} resumes when the study runs again`
        : 'stopped between configurations',
    );
  }
}

/** The fixed run folder of a configuration, so a retried, resumed or re-run one finds its checkpoints. */
export const configRunPath = (out: string, name: string, id: string) =>
  join(out, 'runs', `${name}-${id}`);

/**
 * Runs every configuration of a study in sequence, appending each result to
 * results.jsonl as it finishes; configurations already there (same config hash)
 * are skipped, so an interrupted study continues where it stopped. Then reports.
 */
export async function runStudy(
  file: string,
  catalog: Catalog,
  options: StudyOptions = {},
): Promise<{ outDir: string; results: StudyResult[]; reportFiles: string[] }> {
  const log = options.log ?? ((l: string) => console.error(l));
  const { study, outDir, runs, reported } = prepareStudy(file, catalog, options);
  const parent = await openStudyRun(study, outDir, runs, log);
  const recorded = resultsById(outDir);
  for (const [i, run] of runs.entries()) {
    const tag = `[${i + 1}/${runs.length}] ${runTag(run)}`;
    if (isDone(recorded, run)) {
      log(`${tag}: already done, skipped`);
      continue;
    }
    log(
      `${tag}: training (${run.config.optim.epochs} epochs, batch ${run.config.optim.batchSize})`,
    );
    let record: StudyResult;
    try {
      if (options.shouldStop?.()) throw new StudyRunStopped(undefined);
      record = await runStudyConfig(run, catalog, {
        progress: options.progress ?? true,
        log,
        runPath: configRunPath(outDir, run.config.name, run.id),
        ...(options.shouldStop ? { shouldStop: options.shouldStop } : {}),
        ...studyChildOptions(outDir),
      });
    } catch (e) {
      if (e instanceof StudyRunStopped) await stopStudyRun(parent, log);
      throw e;
    }
    recordResult(outDir, record);
    const probed =
      record.linear !== undefined ? `, linear ${(100 * record.linear).toFixed(2)}%` : '';
    log(
      `${tag}: kNN ${(100 * record.knn).toFixed(2)}%${probed} in ${(record.wallSeconds / 60).toFixed(1)} min`,
    );
  }
  const { results, reportFiles } = await reportStudy(study, outDir, reported);
  await finishStudyRun(parent, reportFiles, log, results);
  return { outDir, results, reportFiles };
}

/**
 * The study's parent MLflow run, when its runs are tracked (tracking.uri or
 * MLFLOW_TRACKING_URI): created once in the study folder, reused on a re-run.
 */
export async function openStudyRun(
  study: Study,
  outDir: string,
  runs: readonly StudyRun[],
  log: (line: string) => void,
): Promise<MlflowUploader | undefined> {
  const { uri } = chooseTrackingUri({
    configUri: runs[0]?.config.tracking.uri ?? '',
    envUri: process.env.MLFLOW_TRACKING_URI,
  });
  if (!uri) return undefined;
  const experimentName = runs[0]?.config.tracking.experiment || study.name;
  const recorded = resultsById(outDir);
  const work = runs.some((r) => !isDone(recorded, r));
  return openParentRun(outDir, uri, experimentName, study.name, log, work);
}

/**
 * Options of a configuration's run in the study folder `outDir`: the kNN baselines
 * shared through `<outDir>/baselines/` (computed once per data, protocol and initial
 * backbone, not once per run), and a child of the study's MLflow run when there is one.
 */
export function studyChildOptions(outDir: string): {
  baselineCache: string;
  mlflow?: { experimentName: string; parentDir: string; source: string };
} {
  const baselineCache = join(outDir, 'baselines');
  if (!hasMlflowState(outDir)) return { baselineCache };
  const parent = MlflowUploader.open(outDir);
  return {
    baselineCache,
    mlflow: {
      experimentName: parent.state.experimentName,
      parentDir: outDir,
      source: `contrast study (${parent.state.runName})`,
    },
  };
}

/**
 * Uploads the report and the summary metrics (see `studySummary`; from
 * `results`, default the folder's results.jsonl) to the parent run and marks
 * it finished. A parent already finished (a re-run with nothing left to train)
 * keeps its end time: the re-run adds no duration.
 */
export async function finishStudyRun(
  parent: MlflowUploader | undefined,
  reportFiles: readonly string[],
  log: (line: string) => void,
  results: readonly StudyResult[],
): Promise<void> {
  if (!parent) return;
  for (const f of [...reportFiles, join(parent.dir, 'results.jsonl')]) {
    parent.addArtifact(basename(f), basename(f));
  }
  recordStudySummary(parent, results);
  if (parent.state.status !== 'FINISHED') parent.setStatus('FINISHED');
  await pumpOrWarn(parent, log);
}

/** Marks the parent run stopped (MLflow: KILLED, with its end time); a re-run reopens it. */
export async function stopStudyRun(
  parent: MlflowUploader | undefined,
  log: (line: string) => void,
): Promise<void> {
  if (!parent) return;
  parent.setStatus('KILLED');
  await pumpOrWarn(parent, log);
}

/** The study's parent MLflow run (created once; a re-run of the study reuses it). */
async function openParentRun(
  outDir: string,
  uri: string,
  experimentName: string,
  name: string,
  log: (line: string) => void,
  work: boolean,
): Promise<MlflowUploader> {
  const probe = await probeTrackingServer(uri, experimentName);
  if (!probe.reachable) log(`[mlflow] ${probe.reason}; the study spools and uploads later`);
  const options = { attempts: 2, backoffMs: 250, timeoutMs: 10_000, warn: log };
  const parent = hasMlflowState(outDir)
    ? MlflowUploader.open(outDir, options)
    : MlflowUploader.create(
        outDir,
        {
          uri,
          experimentName,
          runName: name,
          tags: [
            ...systemTags(process.argv.slice(1).join(' ')),
            { key: RUN_DIR_TAG, value: `study:${outDir}` },
          ],
          paramsFile: 'study.yaml',
        },
        options,
      );
  // the study is running again; with nothing left to train a finished parent stays as it is
  if (parent.state.status && (work || parent.state.status !== 'FINISHED')) parent.reopen();
  await pumpOrWarn(parent, log);
  const url = parent.runUrl();
  if (url) log(`[tracking] MLflow study run ${url}`);
  return parent;
}

async function pumpOrWarn(u: MlflowUploader, log: (line: string) => void): Promise<void> {
  try {
    await u.pump();
  } catch (e) {
    if (!(e instanceof TrackingError)) throw e;
    log(`[mlflow] study run not uploaded yet (${e.message}); later: contrast sync ${u.dir}`);
  }
}

/**
 * Trains one configuration of a study (a finished run folder's result is reused)
 * and, when the study asks for it, runs the linear probe on it in this process
 * ({@link studyProbe}); returns its result record. Throws StudyRunStopped when
 * `options.shouldStop` stopped the training first.
 */
export async function runStudyConfig(
  run: StudyRun,
  catalog: Catalog,
  options: Parameters<typeof runExperiment>[2] = {},
): Promise<StudyResult> {
  const { runPath, result } = await runExperiment(run.config, catalog, options);
  if (result.status !== 'finished') throw new StudyRunStopped(runPath, result.steps);
  const linear = run.linear
    ? await studyProbe(runPath, run.linear, catalog, options.log ?? ((l) => console.error(l)))
    : {};
  return {
    id: run.id,
    series: run.series,
    k: run.k,
    ...(run.xLabel !== undefined ? { xLabel: run.xLabel } : {}),
    seed: run.seed,
    knn: result.knn.trained,
    ...(result.alignment !== undefined
      ? { alignment: result.alignment, uniformity: result.uniformity! }
      : {}),
    ...(result.knn.randomInit !== undefined ? { knnRandomInit: result.knn.randomInit } : {}),
    ...(result.knn.rawPixels !== undefined ? { knnRawPixels: result.knn.rawPixels } : {}),
    ...linear,
    finalLoss: result.finalLoss,
    imgPerSec: result.imgPerSec,
    wallSeconds: result.wallSeconds,
    steps: result.steps,
    epochs: result.epochs,
    runPath,
  };
}

/** The linear probe fields of a study result. */
type ProbeFields = Pick<
  StudyResult,
  | 'linear'
  | 'linearTop5'
  | 'linearLr'
  | 'linearEpochs'
  | 'linearTrainSize'
  | 'linearLrSelected'
  | 'linearSubset'
  | 'linearSeconds'
>;

/**
 * The probe result a run folder already holds (eval/linear.json, or
 * eval/linear-subset.json for a `trainSize` below the split) when it was made
 * with the same epochs, training images and (when fixed) lr; else undefined.
 */
export function recordedProbe(
  runPath: string,
  probe: NonNullable<StudyRun['linear']>,
): ProbeFields | undefined {
  for (const [file, suffix, sizeKey] of [
    ['linear.json', '', 'train_size'],
    ['linear-subset.json', '_subset', 'linear_subset_train_size'],
  ] as const) {
    const path = join(runPath, 'eval', file);
    if (!existsSync(path)) continue;
    const doc = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    const num = (key: string) => (typeof doc[key] === 'number' ? doc[key] : undefined);
    const size = num(sizeKey);
    const selected = Array.isArray((doc.lr_selection as { candidates?: unknown })?.candidates);
    const same =
      num('epochs') === probe.epochs &&
      size !== undefined &&
      // a trainSize at or above the split's size probes the whole split (eval/linear.json)
      (probe.trainSize === 0
        ? suffix === ''
        : size === probe.trainSize || (suffix === '' && size < probe.trainSize)) &&
      (probe.lr === undefined ? selected : !selected && num(`linear_lr${suffix}`) === probe.lr);
    if (!same) continue;
    return {
      linear: num(`linear_top1${suffix}`)!,
      linearTop5: num(`linear_top5${suffix}`)!,
      linearLr: num(`linear_lr${suffix}`)!,
      linearEpochs: probe.epochs,
      linearTrainSize: size,
      linearLrSelected: selected,
      linearSubset: suffix !== '',
      linearSeconds: num('seconds')!,
    };
  }
  return undefined;
}

/**
 * The linear probe of a study's run: `contrast eval linear` in this process
 * (`evaluateRun`: recorded in the run folder, its summary and MLflow run), or
 * the result the folder already holds for the same settings, which is not
 * computed again.
 */
export async function studyProbe(
  runPath: string,
  probe: NonNullable<StudyRun['linear']>,
  catalog: Catalog,
  log: (line: string) => void,
): Promise<ProbeFields> {
  const done = recordedProbe(runPath, probe);
  if (done) {
    log(`linear probe already in ${join(runPath, 'eval')}: not run again`);
    return done;
  }
  await evaluateRun(runPath, 'linear', catalog, {
    probe: { epochs: probe.epochs, ...(probe.lr !== undefined ? { lr: probe.lr } : {}) },
    trainSize: probe.trainSize,
    log,
  });
  const made = recordedProbe(runPath, probe);
  if (!made) throw new Error(`the linear probe of ${runPath} left no eval/linear*.json`);
  return made;
}

/**
 * Loads, expands and checks a study (every configuration's names and plugin
 * options, before anything trains), creates its folder and records study.yaml.
 * `runs` are the configurations to run (`seeds`: those seeds' only); `reported`
 * the whole study's, whose finished results the report shows.
 * @throws ConfigError for a configuration that does not parse; UsageError for a seed the study lacks.
 */
export function prepareStudy(
  file: string,
  catalog: Catalog,
  options: { out?: string; scale?: number; seeds?: readonly number[] } = {},
): { study: Study; outDir: string; runs: StudyRun[]; reported: StudyRun[] } {
  const study = loadStudy(file);
  const outDir = resolve(options.out ?? defaultStudyDir(study.name, options.scale ?? 1));
  const expand = (seeds?: readonly number[]) =>
    expandStudy(study, file, {
      scale: options.scale ?? 1,
      runsDir: join(outDir, 'runs'),
      ...(seeds ? { seeds } : {}),
    });
  const reported = expand();
  const runs = options.seeds ? expand(options.seeds) : reported;
  for (const run of runs) {
    try {
      parseWith(checkNames(run.config, catalog).configSchema, run.config.strategy, 'strategy');
    } catch (e) {
      throw new ConfigError(
        `series '${run.series}', x = ${run.xLabel ?? run.k}`,
        (e as Error).message.split('\n')[0] ?? String(e),
        {
          hint:
            (e as { hint?: string }).hint ??
            'fix the study file: axes and settings are dotted paths of the experiment schema',
          cause: e,
        },
      );
    }
  }
  mkdirSync(outDir, { recursive: true });
  writeFileAtomic(join(outDir, 'study.yaml'), stringify({ ...study, scale: options.scale ?? 1 }));
  return { study, outDir, runs, reported };
}

/** The study's finished results (this expansion's configurations only) and its report files. */
export async function reportStudy(
  study: Study,
  outDir: string,
  runs: readonly StudyRun[],
): Promise<{ results: StudyResult[]; reportFiles: string[] }> {
  const ids = new Set(runs.map((r) => r.id));
  const found = readResults(outDir).filter((r) => ids.has(r.id));
  const results = inSeriesOrder(found, [...new Set(runs.map((r) => r.series))]);
  const reportFiles = await writeReport(outDir, results, reportMeta(study, outDir));
  return { results, reportFiles };
}
