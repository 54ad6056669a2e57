import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { TrackingError, writeFileAtomic } from '@contrast/core';
import {
  LOG_BATCH_LIMITS,
  MLFLOW_LIMITS,
  MlflowClient,
  type ClientOptions,
  type DatasetInput,
  type KeyValue,
  type Metric,
} from './client.js';

/**
 * Everything needed to (re)create and complete the MLflow side of one run,
 * kept in `<run>/mlflow.json`. The run directory is the spool: params come from
 * config.yaml, metrics from metrics.jsonl (uploaded up to `metricsOffset`
 * bytes), artifacts from their files. Any process can finish the upload.
 */
export interface MlflowRunState {
  version: 1;
  uri: string;
  experimentName: string;
  experimentId?: string;
  runId?: string;
  artifactUri?: string;
  runName: string;
  /** Folder of the parent run's state (studies), resolved to its run id at creation. */
  parentDir?: string;
  parentRunId?: string;
  startTime: number;
  /** Set before the first create request, so a lost answer cannot create a second run. */
  createAttempted: boolean;
  tags: KeyValue[];
  input?: DatasetInput;
  /** YAML file (relative to the run folder) whose flattened content is logged as params. */
  paramsFile?: string;
  /**
   * Keys of paramsFile (a key or a `prefix.`) that are run settings, not
   * hyperparameters: logged as run tags under the same key instead of params.
   */
  settings?: string[];
  /** Tags set after the run was created (e.g. the failure reason); `tagsDone` once sent. */
  runTags?: KeyValue[];
  tagsDone?: boolean;
  paramsDone: boolean;
  /** Param keys whose values were cut to the server's limit (the full value is in paramsFile). */
  truncatedParams: string[];
  inputsDone: boolean;
  /** JSON-lines metric file (relative); records are `{step, epoch, time, ...values}`. */
  metricsFile?: string;
  metricsOffset: number;
  metricRecordsSent: number;
  metricPointsSent: number;
  /**
   * Records already on the server that a resumed run will write again (same
   * step, same keys): skipped once each instead of being sent twice.
   */
  skip?: string[];
  /** Artifacts; `size` and `mtimeMs` are the file's when it was uploaded (a rewritten file goes up again). */
  artifacts: ArtifactEntry[];
  status?: 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED';
  endTime?: number;
  statusDone: boolean;
}

export interface ArtifactEntry {
  name: string;
  file: string;
  done: boolean;
  size?: number;
  mtimeMs?: number;
}

const STATE_FILE = 'mlflow.json';
/** Tag holding the local run folder's id: finds a run whose create answer was lost. */
export const RUN_DIR_TAG = 'contrast.run_dir';

export function hasMlflowState(dir: string): boolean {
  return existsSync(join(dir, STATE_FILE));
}

/** Flattens a nested config into `a.b.c` keys with string values (arrays as JSON). */
export function flattenParams(value: unknown, prefix = ''): KeyValue[] {
  if (value === null || value === undefined) return prefix ? [{ key: prefix, value: '' }] : [];
  if (typeof value === 'object' && !Array.isArray(value)) {
    const out: KeyValue[] = [];
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      out.push(...flattenParams(v, prefix ? `${prefix}.${k}` : k));
    }
    return out;
  }
  return [{ key: prefix, value: typeof value === 'string' ? value : JSON.stringify(value) }];
}

/** True when `key` is one of `settings`: the key itself, or under a `prefix.` entry. */
export function isSetting(key: string, settings: readonly string[]): boolean {
  return settings.some((s) => (s.endsWith('.') ? key.startsWith(s) : key === s));
}

/**
 * A flattened run config split into hyperparameters (MLflow params) and run
 * settings (MLflow tags, same keys; values cut to the tag limit): see
 * {@link MlflowRunState.settings}.
 */
export function splitParams(
  doc: unknown,
  settings: readonly string[] = [],
): { params: KeyValue[]; tags: KeyValue[] } {
  const flat = flattenParams(doc);
  const tags = flat
    .filter((p) => isSetting(p.key, settings))
    .map((t) => ({ key: t.key, value: t.value.slice(0, MLFLOW_LIMITS.tagValue) }));
  return { params: flat.filter((p) => !isSetting(p.key, settings)), tags };
}

/** Cuts values longer than the server's limit; returns the keys it cut. */
export function fitParams(params: KeyValue[]): { params: KeyValue[]; truncated: string[] } {
  const truncated: string[] = [];
  const max = MLFLOW_LIMITS.paramValue;
  const out = params.map((p) => {
    if (p.key.length > MLFLOW_LIMITS.key) {
      throw new TrackingError(
        `param key '${p.key.slice(0, 60)}...' is longer than ${MLFLOW_LIMITS.key} characters`,
        {
          hint: 'use a shorter config field name',
        },
      );
    }
    if (p.value.length <= max) return p;
    truncated.push(p.key);
    const marker = '...[truncated]';
    return { key: p.key, value: `${p.value.slice(0, max - marker.length)}${marker}` };
  });
  return { params: out, truncated };
}

/** Metric points of one metrics.jsonl record (every numeric field but step, epoch, time). */
export function recordToMetrics(line: string): Metric[] {
  const r = JSON.parse(line) as Record<string, number | null>;
  const step = Number(r.step ?? 0);
  const timestamp = Math.round(Number(r.time ?? Date.now() / 1000) * 1000);
  const out: Metric[] = [];
  for (const [key, v] of Object.entries(r)) {
    if (key === 'step' || key === 'epoch' || key === 'time') continue;
    out.push({ key, value: v === null ? Number.NaN : Number(v), timestamp, step });
  }
  return out;
}

/** Identifies a metrics record by its step and the keys it holds. */
export function recordSignature(line: string): string {
  const r = JSON.parse(line) as Record<string, unknown>;
  const keys = Object.keys(r)
    .filter((k) => k !== 'step' && k !== 'epoch' && k !== 'time')
    .sort();
  return `${String(r.step)}|${keys.join(',')}`;
}

export interface PendingCounts {
  runCreated: boolean;
  params: boolean;
  tags: boolean;
  inputs: boolean;
  metricBytes: number;
  artifacts: string[];
  status: boolean;
}

export interface UploaderOptions extends ClientOptions {
  warn?: (line: string) => void;
}

/** The upload progress of a run of which nothing is on the server yet. */
function nothingUploaded(s: Pick<MlflowRunState, 'paramsFile' | 'input'>) {
  return {
    createAttempted: false,
    paramsDone: s.paramsFile === undefined,
    truncatedParams: [] as string[],
    inputsDone: s.input === undefined,
    metricsOffset: 0,
    metricRecordsSent: 0,
    metricPointsSent: 0,
    statusDone: false,
  };
}

/** Uploads one run's spool to MLflow, idempotently, stage by stage. */
export class MlflowUploader {
  client: MlflowClient;
  private readonly warn: (line: string) => void;

  private constructor(
    readonly dir: string,
    public state: MlflowRunState,
    private readonly options: UploaderOptions,
  ) {
    this.client = new MlflowClient(state.uri, options);
    this.warn = options.warn ?? ((l) => console.error(l));
  }

  static create(
    dir: string,
    init: Pick<MlflowRunState, 'uri' | 'experimentName' | 'runName' | 'tags'> &
      Partial<
        Pick<MlflowRunState, 'input' | 'paramsFile' | 'metricsFile' | 'parentDir' | 'settings'>
      >,
    options: UploaderOptions = {},
  ): MlflowUploader {
    const state: MlflowRunState = {
      version: 1,
      ...init,
      uri: new MlflowClient(init.uri, { auth: {} }).base,
      startTime: Date.now(),
      ...nothingUploaded(init),
      artifacts: [],
    };
    const u = new MlflowUploader(dir, state, options);
    u.save();
    return u;
  }

  static open(dir: string, options: UploaderOptions = {}): MlflowUploader {
    const file = join(dir, STATE_FILE);
    if (!existsSync(file)) {
      throw new TrackingError(`${dir} has no ${STATE_FILE}: it was not tracked in MLflow`, {
        hint: 'pass a run folder that was trained with tracking.uri or MLFLOW_TRACKING_URI set',
      });
    }
    let state: MlflowRunState;
    try {
      state = JSON.parse(readFileSync(file, 'utf8')) as MlflowRunState;
    } catch (e) {
      throw new TrackingError(`${file} is not valid JSON (${(e as Error).message})`, { cause: e });
    }
    if (state.version !== 1) {
      throw new TrackingError(`${file} has unknown version ${String(state.version)}`);
    }
    return new MlflowUploader(dir, state, options);
  }

  save(): void {
    writeFileAtomic(join(this.dir, STATE_FILE), `${JSON.stringify(this.state, null, 2)}\n`);
  }

  /**
   * Lists an artifact (`name` on the server, `file` relative to the run folder)
   * and marks it for upload. One file is one artifact: a file already listed
   * under another name keeps that name. (Runs uploaded before the final state was
   * named after its file list `state/final.bin` as `checkpoints/final.bin`; they
   * keep it, so the server holds one copy and nothing there moves.)
   */
  addArtifact(name: string, file: string): void {
    const existing = this.entryFor(name, file);
    if (existing) {
      existing.file = file;
      existing.done = false; // rewritten: upload again (PUT overwrites)
    } else {
      this.state.artifacts.push({ name, file, done: false });
    }
    this.save();
  }

  /**
   * A resumed run cuts metrics.jsonl back to its checkpoint (`bytes`). Records
   * past that point that were already uploaded are remembered, so when the
   * resumed run writes them again they are not sent a second time.
   */
  rewindMetrics(bytes: number): void {
    const s = this.state;
    if (!s.metricsFile || s.metricsOffset <= bytes) return;
    const tail = readRange(join(this.dir, s.metricsFile), bytes, s.metricsOffset)
      .toString('utf8')
      .split('\n')
      .filter((l) => l.trim());
    s.skip = [...(s.skip ?? []), ...tail.map(recordSignature)];
    s.metricRecordsSent -= tail.length;
    s.metricPointsSent -= tail.reduce((n, l) => n + recordToMetrics(l).length, 0);
    s.metricsOffset = bytes;
    this.save();
  }

  /** Run tags to set (or overwrite) with the next upload, e.g. the failure reason. */
  addTags(tags: Record<string, string>): void {
    const s = this.state;
    const map = new Map((s.runTags ?? []).map((t) => [t.key, t.value]));
    let changed = false;
    for (const [key, value] of Object.entries(tags)) {
      const v = value.slice(0, MLFLOW_LIMITS.tagValue);
      if (map.get(key) === v) continue;
      map.set(key, v);
      changed = true;
    }
    if (!changed) return;
    s.runTags = [...map].map(([key, value]) => ({ key, value }));
    s.tagsDone = false;
    this.save();
  }

  /** The run's page in the MLflow UI (`<uri>/#/experiments/<id>/runs/<runId>`); undefined before it exists. */
  runUrl(): string | undefined {
    const s = this.state;
    return s.runId && s.experimentId
      ? `${s.uri}/#/experiments/${s.experimentId}/runs/${s.runId}`
      : undefined;
  }

  /**
   * `file` was rewritten from scratch (e.g. a study's summary): its metrics go
   * up again from the start with the next upload.
   */
  restartMetrics(file: string): void {
    const s = this.state;
    Object.assign(s, { metricsFile: file, metricsOffset: 0, metricRecordsSent: 0 });
    s.metricPointsSent = 0;
    delete s.skip;
    this.save();
  }

  /** A resumed run: running again (RUNNING is sent with the next upload). */
  reopen(): void {
    this.state.status = 'RUNNING';
    this.state.endTime = undefined;
    this.state.statusDone = false;
    this.save();
  }

  /** The run's final status and end time (ms since the epoch; default now), sent with the next upload. */
  setStatus(status: 'FINISHED' | 'FAILED' | 'KILLED', endTime = Date.now()): void {
    this.state.status = status;
    this.state.endTime = endTime;
    this.state.statusDone = false;
    this.save();
  }

  /** The entry named `name`, else the one listing `file` under an older name. */
  private entryFor(name: string, file: string): ArtifactEntry | undefined {
    const { artifacts } = this.state;
    return artifacts.find((a) => a.name === name) ?? artifacts.find((a) => a.file === file);
  }

  /**
   * Makes sure an artifact is listed and marks it for upload when its file
   * changed since it went up (size or mtime), or when `force` says the server
   * lacks it. Returns true when it will be uploaded.
   */
  refreshArtifact(name: string, file: string, force = false): boolean {
    const entry = this.entryFor(name, file);
    if (!entry) {
      this.addArtifact(name, file);
      return true;
    }
    const path = join(this.dir, file);
    const st = existsSync(path) ? statSync(path) : undefined;
    const changed = st !== undefined && (st.size !== entry.size || st.mtimeMs !== entry.mtimeMs);
    if (entry.file === file && entry.done && !changed && !force) return false;
    entry.file = file;
    entry.done = false;
    this.save();
    return true;
  }

  /**
   * Moves tracking to another server: a new MLflow run there receives the whole
   * run folder (params, input, every metric record, artifacts); the old run is
   * left as it is. The parent link is dropped (the parent lives on the old server).
   */
  retarget(uri: string): void {
    const s = this.state;
    s.uri = new MlflowClient(uri, { auth: {} }).base;
    for (const key of [
      'experimentId',
      'runId',
      'artifactUri',
      'parentRunId',
      'parentDir',
      'skip',
    ] as const) {
      delete s[key];
    }
    Object.assign(s, nothingUploaded(s));
    if (s.runTags) s.tagsDone = false;
    for (const a of s.artifacts) a.done = false;
    this.client = new MlflowClient(s.uri, this.options);
    this.save();
  }

  pending(): PendingCounts {
    const s = this.state;
    let size = 0;
    if (s.metricsFile && existsSync(join(this.dir, s.metricsFile))) {
      size = statSync(join(this.dir, s.metricsFile)).size;
    }
    return {
      runCreated: s.runId !== undefined,
      params: !s.paramsDone,
      tags: s.tagsDone === false,
      inputs: !s.inputsDone,
      metricBytes: Math.max(0, size - s.metricsOffset),
      artifacts: s.artifacts.filter((a) => !a.done).map((a) => a.name),
      status: s.status !== undefined && !s.statusDone,
    };
  }

  isComplete(): boolean {
    const p = this.pending();
    return (
      p.runCreated &&
      !p.params &&
      !p.tags &&
      !p.inputs &&
      p.metricBytes === 0 &&
      p.artifacts.length === 0 &&
      !p.status
    );
  }

  /** Creates the experiment and the run once; finds the run again if a create answer was lost. */
  async ensureRun(): Promise<string> {
    const s = this.state;
    if (s.runId) return s.runId;
    s.experimentId ??= await this.client.getOrCreateExperiment(s.experimentName);
    const localId = s.tags.find((t) => t.key === RUN_DIR_TAG)?.value;
    if (s.createAttempted && localId) {
      const found = await this.client.searchRuns(
        [s.experimentId],
        `tags.\`${RUN_DIR_TAG}\` = '${localId.replace(/'/g, "\\'")}'`,
      );
      if (found[0]) {
        this.adopt(found[0].info.run_id, found[0].info.artifact_uri);
        return s.runId!;
      }
    }
    if (s.parentDir && !s.parentRunId) {
      const parent = MlflowUploader.open(s.parentDir, { attempts: 1, warn: this.warn });
      s.parentRunId = await parent.ensureRun();
    }
    s.createAttempted = true;
    this.save();
    const tags = [...s.tags];
    if (s.parentRunId) tags.push({ key: 'mlflow.parentRunId', value: s.parentRunId });
    const info = await this.client.createRun({
      experimentId: s.experimentId,
      runName: s.runName,
      startTime: s.startTime,
      tags,
    });
    this.adopt(info.run_id, info.artifact_uri);
    return info.run_id;
  }

  private adopt(runId: string, artifactUri: string): void {
    this.state.runId = runId;
    this.state.artifactUri = artifactUri;
    this.save();
  }

  /**
   * One pass over every pending stage, in order: run, params, dataset input,
   * metrics (line-aligned requests within the server's limits; the cursor moves
   * after each accepted request), artifacts, final status. Throws TrackingError;
   * whatever was accepted before the error stays accepted.
   */
  async pump(): Promise<void> {
    const s = this.state;
    const runId = await this.ensureRun();
    if (!s.paramsDone && s.paramsFile) {
      const doc = parse(readFileSync(join(this.dir, s.paramsFile), 'utf8')) as unknown;
      const split = splitParams(doc, s.settings);
      const { params, truncated } = fitParams(split.params);
      if (truncated.length) {
        this.warn(
          `[mlflow] param value too long for the server (${MLFLOW_LIMITS.paramValue} characters), cut: ${truncated.join(', ')}; the full value is in the ${s.paramsFile} artifact`,
        );
      }
      await this.client.logBatch(runId, { params, tags: split.tags });
      s.paramsDone = true;
      s.truncatedParams = truncated;
      this.save();
    }
    if (s.tagsDone === false && s.runTags) {
      await this.client.logBatch(runId, { tags: s.runTags });
      s.tagsDone = true;
      this.save();
    }
    if (!s.inputsDone && s.input) {
      await this.client.logInputs(runId, [s.input]);
      s.inputsDone = true;
      this.save();
    }
    if (s.metricsFile) await this.pumpMetrics(runId, s.metricsFile);
    for (const a of s.artifacts) {
      if (a.done) continue;
      const path = join(this.dir, a.file);
      if (!existsSync(path)) {
        throw new TrackingError(`artifact ${a.name}: ${path} does not exist`);
      }
      const st = statSync(path);
      await this.client.uploadArtifact(s.artifactUri!, a.name, readFileSync(path));
      Object.assign(a, { done: true, size: st.size, mtimeMs: st.mtimeMs });
      this.save();
    }
    if (s.status && !s.statusDone) {
      await this.client.updateRun(runId, s.status, s.endTime);
      s.statusDone = true;
      this.save();
    }
  }

  private async pumpMetrics(runId: string, file: string): Promise<void> {
    const path = join(this.dir, file);
    if (!existsSync(path)) return;
    const size = statSync(path).size;
    const s = this.state;
    while (s.metricsOffset < size) {
      const chunk = readRange(path, s.metricsOffset, Math.min(size, s.metricsOffset + (4 << 20)));
      const end = chunk.lastIndexOf(0x0a); // only complete lines
      if (end < 0) return;
      const lines = chunk
        .subarray(0, end + 1)
        .toString('utf8')
        .split('\n');
      lines.pop();
      let i = 0;
      let offset = s.metricsOffset;
      while (i < lines.length) {
        const metrics: Metric[] = [];
        const skip = [...(s.skip ?? [])]; // committed only when the request is accepted
        let skippedPoints = 0;
        let bytes = 0;
        let records = 0;
        while (i < lines.length) {
          const line = lines[i]!;
          let points = line.trim() ? recordToMetrics(line) : [];
          const at = skip.length && points.length ? skip.indexOf(recordSignature(line)) : -1;
          if (at >= 0) {
            skip.splice(at, 1); // already on the server from before the resume
            skippedPoints += points.length;
            points = [];
          }
          if (metrics.length + points.length > LOG_BATCH_LIMITS.metrics && records > 0) break;
          metrics.push(...points);
          bytes += Buffer.byteLength(line) + 1;
          records++;
          i++;
        }
        if (metrics.length) await this.client.logBatch(runId, { metrics });
        offset += bytes;
        s.metricsOffset = offset;
        s.metricRecordsSent += records;
        s.metricPointsSent += metrics.length + skippedPoints;
        if (s.skip) s.skip = skip;
        this.save();
      }
    }
  }
}

function readRange(path: string, start: number, end: number): Buffer {
  const buf = Buffer.alloc(end - start);
  const fd = openSync(path, 'r');
  try {
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, start + off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}
