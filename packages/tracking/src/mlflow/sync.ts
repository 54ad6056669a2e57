import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { TrackingError } from '@contrast/core';
import type { ClientOptions, Run } from './client.js';
import {
  fitParams,
  hasMlflowState,
  MlflowUploader,
  recordToMetrics,
  splitParams,
} from './uploader.js';

type FinalStatus = 'FINISHED' | 'FAILED' | 'KILLED';

/** summary.json's status -> MLflow's (interrupted = stopped on purpose = KILLED). */
const STATUS_OF: Record<string, FinalStatus> = {
  finished: 'FINISHED',
  failed: 'FAILED',
  interrupted: 'KILLED',
};

export interface SyncedRun {
  dir: string;
  uri: string;
  runId: string;
  experimentId: string;
  /** The run's page in the MLflow UI. */
  url: string;
  metricRecordsSent: number;
  metricPointsSent: number;
  artifacts: number;
  /** Metric records this sync uploaded (0 when the run was already complete). */
  uploadedNow: number;
  /** What this sync changed on the server, one phrase each (empty: nothing). */
  changes: string[];
  /** The status the server reports after the sync (read back). */
  serverStatus: string;
  /**
   * True when the server, read back, matches the folder: final status and end
   * time, params, artifacts, the latest value of every metric. False for a run
   * folder that says it is still running (see `note`).
   */
  complete: boolean;
  note?: string;
}

/** The end of a run as its folder records it: summary.json's status and end time. */
interface FolderTruth {
  /** undefined: the folder says the run is still running (or it has no summary.json). */
  status?: FinalStatus;
  endTime?: number;
  localStatus?: string;
  /** artifact name -> file relative to the run folder. */
  artifacts: [string, string][];
  /** summary.json's tags (MLflow run tags). */
  tags?: Record<string, string>;
}

function folderTruth(u: MlflowUploader): FolderTruth {
  const dir = u.dir;
  const artifacts: [string, string][] = [];
  const summaryPath = join(dir, 'summary.json');
  if (!existsSync(summaryPath)) {
    // not a training run (a study's parent run): its uploader state is the record
    const s = u.state;
    return s.status && s.status !== 'RUNNING'
      ? { status: s.status, ...(s.endTime !== undefined ? { endTime: s.endTime } : {}), artifacts }
      : { artifacts };
  }
  const summary = JSON.parse(readFileSync(summaryPath, 'utf8')) as Record<string, unknown>;
  if (u.state.paramsFile === 'config.yaml') artifacts.push(['config.yaml', 'config.yaml']);
  artifacts.push(['summary.json', 'summary.json']);
  if (existsSync(join(dir, 'state', 'final.bin'))) {
    // a run uploaded before keeps its `checkpoints/final.bin` (MlflowUploader.addArtifact)
    artifacts.push(['state/final.bin', 'state/final.bin']);
  }
  const evalDir = join(dir, 'eval');
  if (existsSync(evalDir)) {
    for (const f of readdirSync(evalDir)
      .filter((n) => n.endsWith('.json'))
      .sort()) {
      artifacts.push([`eval/${f}`, join('eval', f)]);
    }
  }
  const localStatus = String(summary.status ?? '');
  const tags = summary.tags as Record<string, string> | undefined;
  const status = STATUS_OF[localStatus];
  const ended = Date.parse(String(summary.ended ?? summary.updated ?? ''));
  return {
    localStatus,
    artifacts,
    ...(tags ? { tags } : {}),
    ...(status
      ? { status, endTime: Number.isFinite(ended) ? ended : statSync(summaryPath).mtimeMs }
      : {}),
  };
}

/** The latest record of every metric in metrics.jsonl: key -> [step, value]. */
function latestMetrics(dir: string, file: string | undefined): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  const path = file ? join(dir, file) : '';
  if (!path || !existsSync(path)) return out;
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.pop(); // after the last newline: empty, or a line a killed process left half-written
  for (const line of lines) {
    if (!line.trim()) continue;
    for (const m of recordToMetrics(line)) {
      const prev = out.get(m.key);
      if (!prev || m.step >= prev[0]) out.set(m.key, [m.step, m.value]);
    }
  }
  return out;
}

const sameNumber = (a: number, b: number) => a === b || (Number.isNaN(a) && Number.isNaN(b));

/** Where the server, read back, differs from the folder; each entry names the field. */
async function disagreements(u: MlflowUploader, truth: FolderTruth, run: Run): Promise<string[]> {
  const out: string[] = [];
  const s = u.state;
  if (truth.status) {
    if (run.info.status !== truth.status) {
      out.push(`status is ${run.info.status}, the folder says ${truth.status}`);
    }
    if (Number(run.info.end_time) !== truth.endTime) {
      out.push(`end time is ${String(run.info.end_time)}, the folder says ${truth.endTime}`);
    }
  }
  if (s.paramsFile && existsSync(join(u.dir, s.paramsFile))) {
    const doc = parse(readFileSync(join(u.dir, s.paramsFile), 'utf8')) as unknown;
    const server = new Map((run.data.params ?? []).map((p) => [p.key, p.value]));
    const split = splitParams(doc, s.settings);
    const missing = fitParams(split.params).params.filter((p) => server.get(p.key) !== p.value);
    if (missing.length)
      out.push(`params ${missing.map((p) => p.key).join(', ')} differ or are missing`);
    const serverTags = new Map((run.data.tags ?? []).map((t) => [t.key, t.value]));
    const wrongTags = [...split.tags, ...(s.runTags ?? [])].filter(
      (t) => serverTags.get(t.key) !== t.value,
    );
    if (wrongTags.length)
      out.push(`tags ${wrongTags.map((t) => t.key).join(', ')} differ or are missing`);
  }
  const server = new Map((run.data.metrics ?? []).map((m) => [m.key, m]));
  // a resumed run's folder was cut back to its checkpoint: points the server got past it are
  // listed in `skip` (rewritten by the resumed run), so the server may be ahead by those
  const ahead = (key: string, step: number) =>
    (s.skip ?? []).some((sig) => {
      const [at, keys] = sig.split('|');
      return Number(at) === step && (keys ?? '').split(',').includes(key);
    });
  for (const [key, [step, value]] of latestMetrics(u.dir, s.metricsFile)) {
    const m = server.get(key);
    const agrees =
      m !== undefined &&
      (Number(m.step) === step
        ? sameNumber(Number(m.value), value)
        : Number(m.step) > step && ahead(key, Number(m.step)));
    if (!agrees) {
      out.push(
        `metric ${key}: latest on the server is ${m ? `${m.value} at step ${m.step}` : 'missing'}, the folder has ${value} at step ${step}`,
      );
    }
  }
  for (const a of s.artifacts) {
    const slash = a.name.lastIndexOf('/');
    const listed = await u.client.listArtifacts(
      s.artifactUri!,
      slash < 0 ? '' : a.name.slice(0, slash),
    );
    const base = a.name.slice(slash + 1);
    const file = listed.find((f) => f.path === base || f.path === a.name); // relative to the listed folder
    const size = statSync(join(u.dir, a.file)).size;
    if (!file || Number(file.file_size) !== size) {
      out.push(
        `artifact ${a.name} is ${file ? `${file.file_size} bytes` : 'missing'}, the folder has ${size} bytes`,
      );
    }
  }
  return out;
}

/** Phrases for what a pump changed, from the pending work before it. */
function describeChanges(
  before: ReturnType<MlflowUploader['pending']>,
  uploadedNow: number,
  statusBefore: string | undefined,
  u: MlflowUploader,
): string[] {
  const s = u.state;
  return [
    before.runCreated ? '' : 'created the MLflow run',
    before.params ? 'params' : '',
    before.tags ? 'tags' : '',
    before.inputs ? 'dataset input' : '',
    uploadedNow ? `${uploadedNow} metric records` : '',
    before.artifacts.length ? `artifacts ${before.artifacts.join(', ')}` : '',
    before.status && s.status
      ? `status ${statusBefore ?? 'none'} -> ${s.status}${s.endTime !== undefined ? `, end time ${new Date(s.endTime).toISOString()}` : ''}`
      : '',
  ].filter(Boolean);
}

/**
 * Brings the server to one run folder's truth: uploads what is spooled, the
 * final artifacts (config.yaml, summary.json, the final state, eval results;
 * again when rewritten) and the status and end time summary.json records, then
 * reads the run back and compares. A folder that says "running" is uploaded but
 * its status is left alone: the process may still be training (or was killed;
 * resuming it finishes the MLflow run), so nothing is claimed complete.
 */
export async function syncRun(
  dir: string,
  options: ClientOptions & { warn?: (line: string) => void } = {},
): Promise<SyncedRun> {
  const u = MlflowUploader.open(dir, options);
  const truth = folderTruth(u);
  const server = u.state.runId ? await u.client.getRun(u.state.runId) : undefined;
  for (const [name, file] of truth.artifacts) u.refreshArtifact(name, file);
  if (truth.tags) u.addTags(truth.tags);
  if (truth.status) {
    const s = u.state;
    const differs =
      s.status !== truth.status ||
      s.endTime !== truth.endTime ||
      (server !== undefined &&
        (server.info.status !== truth.status || Number(server.info.end_time) !== truth.endTime));
    if (differs || !s.statusDone) u.setStatus(truth.status, truth.endTime);
  }
  const pending = u.pending();
  const recordsBefore = u.state.metricRecordsSent;
  await u.pump();
  if (!u.isComplete()) {
    throw new TrackingError(`${dir}: upload incomplete after sync`, {
      hint: 'run contrast sync again',
    });
  }
  const uploadedNow = u.state.metricRecordsSent - recordsBefore;
  const changes = describeChanges(pending, uploadedNow, server?.info.status, u);
  let run = await u.client.getRun(u.state.runId!);
  let wrong = await disagreements(u, truth, run);
  // the server lost (or never kept) a file it accepted: upload it again, once
  const lost = u.state.artifacts.filter((a) =>
    wrong.some((w) => w.startsWith(`artifact ${a.name} `)),
  );
  if (lost.length) {
    for (const a of lost) u.refreshArtifact(a.name, a.file, true);
    await u.pump();
    changes.push(
      `artifacts ${lost.map((a) => a.name).join(', ')} again (the server did not have them)`,
    );
    run = await u.client.getRun(u.state.runId!);
    wrong = await disagreements(u, truth, run);
  }
  if (wrong.length) {
    throw new TrackingError(
      `${dir}: after sync the MLflow run ${u.state.runId} still differs from the run folder: ${wrong.join('; ')}`,
      {
        hint: 'run contrast sync again; if it persists, the server changed the run (compare it in the MLflow UI)',
      },
    );
  }
  const running = truth.status === undefined;
  return {
    dir,
    uri: u.state.uri,
    runId: u.state.runId!,
    experimentId: u.state.experimentId!,
    url: u.runUrl()!,
    metricRecordsSent: u.state.metricRecordsSent,
    metricPointsSent: u.state.metricPointsSent,
    artifacts: u.state.artifacts.length,
    uploadedNow,
    changes,
    serverStatus: run.info.status,
    complete: !running,
    ...(running
      ? {
          note: `the run folder says ${truth.localStatus ? `'${truth.localStatus}'` : 'it has not ended'}, so its MLflow status is left ${run.info.status}; if its process is gone, contrast train --resume ${dir} continues it and ends its MLflow run`,
        }
      : {}),
  };
}

/** Run folders under a target: the folder itself (a run, or a study's parent run) and every run in runs/. */
function syncTargets(target: string): string[] {
  const dir = resolve(target);
  const dirs: string[] = [];
  if (hasMlflowState(dir)) dirs.push(dir);
  const children = join(dir, 'runs');
  if (existsSync(children)) {
    for (const name of readdirSync(children).sort()) {
      if (hasMlflowState(join(children, name))) dirs.push(join(children, name));
    }
  }
  if (dirs.length === 0) {
    throw new TrackingError(`${dir} has no mlflow.json: it was not tracked in MLflow`, {
      hint: 'pass a run (or study) folder trained with tracking.uri or MLFLOW_TRACKING_URI set',
    });
  }
  return dirs;
}

/**
 * `contrast sync`: brings the server to each run folder's truth (`syncRun`). A
 * study folder syncs its own (parent) run first, then every run under `runs/`.
 * Safe to repeat: already-accepted records are never sent twice. `onRun` sees
 * each run as it is done.
 */
export async function syncRuns(
  target: string,
  options: ClientOptions & {
    warn?: (line: string) => void;
    onRun?: (run: SyncedRun) => void;
  } = {},
): Promise<SyncedRun[]> {
  const out: SyncedRun[] = [];
  for (const d of syncTargets(target)) {
    const r = await syncRun(d, options);
    options.onRun?.(r);
    out.push(r);
  }
  return out;
}

/** What `contrast sync` prints for one run. */
export function formatSyncedRun(r: SyncedRun): string {
  const counts = `${r.uploadedNow} metric records uploaded now, ${r.metricRecordsSent} records / ${r.metricPointsSent} points in all, ${r.artifacts} artifacts`;
  const head = r.complete
    ? `${r.dir}: MLflow run ${r.runId} (experiment ${r.experimentId}) on ${r.uri} complete, status ${r.serverStatus}; ${counts}`
    : `${r.dir}: MLflow run ${r.runId} (experiment ${r.experimentId}) on ${r.uri} uploaded, status left ${r.serverStatus}; ${counts}`;
  const lines = [
    head,
    `  ${r.url}`,
    r.changes.length
      ? `  changed: ${r.changes.join('; ')}`
      : r.complete
        ? '  nothing to change: the server already matched the run folder'
        : '  nothing to upload',
  ];
  if (r.note) lines.push(`  ${r.note}`);
  return `${lines.join('\n')}\n`;
}
