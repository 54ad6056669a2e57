import { TrackingError } from '@contrast/core';

/**
 * A small typed client for the MLflow tracking REST API (2.0), on `fetch`.
 * Retries 429, 5xx and network errors with exponential backoff; other answers
 * become a TrackingError carrying the server's error_code and message.
 * Credentials come from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME /
 * MLFLOW_TRACKING_PASSWORD and never appear in a message.
 */

/** Server limits per log-batch request (MLflow's documented maxima). */
export const LOG_BATCH_LIMITS = { metrics: 1000, params: 100, tags: 100, total: 1000 } as const;
/** Key and value length limits the server enforces (characters). */
export const MLFLOW_LIMITS = { key: 250, paramValue: 6000, tagValue: 8000 } as const;

export interface MlflowAuth {
  token?: string;
  username?: string;
  password?: string;
}

export interface Metric {
  key: string;
  value: number;
  timestamp: number;
  step: number;
}
export interface KeyValue {
  key: string;
  value: string;
}

export interface RunInfo {
  run_id: string;
  experiment_id: string;
  run_name?: string;
  status: string;
  artifact_uri: string;
  start_time?: number;
  end_time?: number;
  lifecycle_stage?: string;
}
export interface Run {
  info: RunInfo;
  data: { metrics?: Metric[]; params?: KeyValue[]; tags?: KeyValue[] };
  inputs?: {
    dataset_inputs?: {
      tags?: KeyValue[];
      dataset: { name: string; digest: string; source_type: string; source: string };
    }[];
  };
}
export interface Experiment {
  experiment_id: string;
  name: string;
  lifecycle_stage: string;
  artifact_location?: string;
}
export interface DatasetInput {
  name: string;
  digest: string;
  sourceType: string;
  source: string;
  context?: string;
}

export type FetchLike = typeof fetch;

export interface ClientOptions {
  auth?: MlflowAuth;
  /** Attempts per request, the first included (default 5). */
  attempts?: number;
  /** First backoff delay; doubles per attempt, capped at maxBackoffMs (default 500 / 8000). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  fetch?: FetchLike;
  sleep?: (ms: number) => Promise<void>;
}

export function authFromEnv(env: NodeJS.ProcessEnv = process.env): MlflowAuth {
  const auth: MlflowAuth = {};
  if (env.MLFLOW_TRACKING_TOKEN) auth.token = env.MLFLOW_TRACKING_TOKEN;
  if (env.MLFLOW_TRACKING_USERNAME) auth.username = env.MLFLOW_TRACKING_USERNAME;
  if (env.MLFLOW_TRACKING_PASSWORD) auth.password = env.MLFLOW_TRACKING_PASSWORD;
  return auth;
}

/**
 * Parses a tracking URI: http(s) only; credentials written into the URI are
 * moved to basic auth (fetch refuses them) and removed from the URI we show.
 */
export function parseTrackingUri(uri: string): { base: string; auth: MlflowAuth } {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new TrackingError(`tracking URI '${uri}' is not a URL`, {
      hint: 'use the address of an MLflow server, e.g. http://127.0.0.1:5000',
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TrackingError(
      `tracking URI scheme '${url.protocol}' is not supported; Contrast talks to MLflow over HTTP`,
      {
        hint: 'start `mlflow server` and use its http://host:port address (runs are always kept in the local run directory too)',
      },
    );
  }
  const auth: MlflowAuth = {};
  if (url.username) auth.username = decodeURIComponent(url.username);
  if (url.password) auth.password = decodeURIComponent(url.password);
  url.username = '';
  url.password = '';
  return { base: url.toString().replace(/\/+$/, ''), auth };
}

/**
 * Splits one log-batch payload into requests within the server's limits,
 * keeping the original order within each kind.
 */
export function chunkLogBatch(batch: {
  metrics?: Metric[];
  params?: KeyValue[];
  tags?: KeyValue[];
}): { metrics: Metric[]; params: KeyValue[]; tags: KeyValue[] }[] {
  const metrics = [...(batch.metrics ?? [])];
  const params = [...(batch.params ?? [])];
  const tags = [...(batch.tags ?? [])];
  const out: { metrics: Metric[]; params: KeyValue[]; tags: KeyValue[] }[] = [];
  while (metrics.length || params.length || tags.length) {
    const p = params.splice(0, LOG_BATCH_LIMITS.params);
    const t = tags.splice(0, LOG_BATCH_LIMITS.tags);
    const room = Math.min(LOG_BATCH_LIMITS.metrics, LOG_BATCH_LIMITS.total - p.length - t.length);
    out.push({ metrics: metrics.splice(0, room), params: p, tags: t });
  }
  return out;
}

/** The part of an `mlflow-artifacts:/...` artifact URI after the scheme. */
export function artifactProxyPath(artifactUri: string): string {
  const m = /^mlflow-artifacts:(?:\/\/[^/]*)?\/(.*)$/.exec(artifactUri);
  if (!m) {
    throw new TrackingError(
      `the server stores this run's artifacts at '${artifactUri}', which it does not proxy`,
      {
        hint: 'start `mlflow server` with --artifacts-destination (artifact proxying is on by default) so artifacts can be uploaded over HTTP',
      },
    );
  }
  return m[1]!.replace(/\/+$/, '');
}

const RETRYABLE_STATUS = (s: number) => s === 429 || s >= 500;

export class MlflowClient {
  readonly base: string;
  private readonly headers: Record<string, string> = {};
  private readonly secrets: string[] = [];
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly timeoutMs: number;
  private readonly fetchImpl: FetchLike;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(uri: string, options: ClientOptions = {}) {
    const parsed = parseTrackingUri(uri);
    this.base = parsed.base;
    const auth = { ...parsed.auth, ...(options.auth ?? authFromEnv()) };
    if (auth.token) {
      this.headers.authorization = `Bearer ${auth.token}`;
      this.secrets.push(auth.token);
    } else if (auth.username !== undefined || auth.password !== undefined) {
      const basic = Buffer.from(`${auth.username ?? ''}:${auth.password ?? ''}`).toString('base64');
      this.headers.authorization = `Basic ${basic}`;
      this.secrets.push(basic);
      if (auth.password) this.secrets.push(auth.password);
    }
    this.attempts = Math.max(1, options.attempts ?? 5);
    this.backoffMs = options.backoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 8000;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.fetchImpl = options.fetch ?? fetch;
    this.sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Removes every credential from a text before it is shown. */
  redact(text: string): string {
    let out = text;
    for (const s of this.secrets) if (s) out = out.split(s).join('***');
    return out;
  }

  private async request<T>(
    method: 'GET' | 'POST' | 'PUT',
    path: string,
    body?: unknown,
    raw?: { data: Uint8Array | string; contentType: string },
  ): Promise<T> {
    const url = `${this.base}${path}`;
    const what = `${method} ${path.split('?')[0]}`;
    let lastError: TrackingError | undefined;
    let retryAfter: number | undefined;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      if (attempt > 0) {
        const delay =
          retryAfter ?? Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (attempt - 1));
        await this.sleep(delay * (0.75 + 0.5 * Math.random()));
      }
      let res: Response;
      try {
        res = await this.fetchImpl(url, {
          method,
          headers: {
            ...this.headers,
            ...(raw
              ? { 'content-type': raw.contentType }
              : body !== undefined
                ? { 'content-type': 'application/json' }
                : {}),
          },
          body: raw ? raw.data : body !== undefined ? JSON.stringify(body) : undefined,
          signal: AbortSignal.timeout(this.timeoutMs),
        } as RequestInit);
      } catch (e) {
        const err = e as Error & { cause?: { code?: string } };
        const reason = err.cause?.code ?? err.name ?? 'network error';
        lastError = new TrackingError(
          this.redact(`MLflow server at ${this.base} unreachable (${what}: ${reason})`),
          { retryable: true },
        );
        retryAfter = undefined;
        continue;
      }
      const text = await res.text().catch(() => '');
      if (res.ok) return (text ? JSON.parse(text) : {}) as T;
      let mlflowCode: string | undefined;
      let message = text.slice(0, 500);
      try {
        const j = JSON.parse(text) as { error_code?: string; message?: string };
        mlflowCode = j.error_code;
        if (j.message) message = j.message;
      } catch {
        /* not JSON: keep the text */
      }
      const retryable = RETRYABLE_STATUS(res.status);
      retryAfter = res.status === 429 ? retryAfterMs(res.headers.get('retry-after')) : undefined;
      if (res.status === 401 || res.status === 403) {
        throw new TrackingError(
          this.redact(
            `MLflow server at ${this.base} refused the credentials (HTTP ${res.status} on ${what})`,
          ),
          {
            status: res.status,
            ...(mlflowCode ? { mlflowCode } : {}),
            hint: 'check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD',
          },
        );
      }
      lastError = new TrackingError(
        this.redact(
          `MLflow ${what} failed: HTTP ${res.status}${mlflowCode ? ` ${mlflowCode}` : ''}: ${message}`,
        ),
        { status: res.status, ...(mlflowCode ? { mlflowCode } : {}), retryable },
      );
      if (!retryable) throw lastError;
    }
    throw lastError!;
  }

  // ---- experiments ----

  async getExperimentByName(name: string): Promise<Experiment | undefined> {
    try {
      const r = await this.request<{ experiment: Experiment }>(
        'GET',
        `/api/2.0/mlflow/experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`,
      );
      return r.experiment;
    } catch (e) {
      if (e instanceof TrackingError && e.mlflowCode === 'RESOURCE_DOES_NOT_EXIST')
        return undefined;
      throw e;
    }
  }

  async createExperiment(name: string): Promise<string> {
    const r = await this.request<{ experiment_id: string }>(
      'POST',
      '/api/2.0/mlflow/experiments/create',
      { name },
    );
    return r.experiment_id;
  }

  /** Get-or-create; when another process creates it first, the existing id is returned. */
  async getOrCreateExperiment(name: string): Promise<string> {
    const found = await this.getExperimentByName(name);
    if (found) {
      if (found.lifecycle_stage === 'deleted') {
        throw new TrackingError(`MLflow experiment '${name}' is deleted`, {
          hint: 'restore it in the MLflow UI (or with `mlflow experiments restore`), or use another tracking.experiment',
        });
      }
      return found.experiment_id;
    }
    try {
      return await this.createExperiment(name);
    } catch (e) {
      if (e instanceof TrackingError && e.mlflowCode === 'RESOURCE_ALREADY_EXISTS') {
        const again = await this.getExperimentByName(name);
        if (again) return again.experiment_id;
      }
      throw e;
    }
  }

  // ---- runs ----

  async createRun(options: {
    experimentId: string;
    runName?: string;
    startTime?: number;
    tags?: KeyValue[];
  }): Promise<RunInfo> {
    const r = await this.request<{ run: Run }>('POST', '/api/2.0/mlflow/runs/create', {
      experiment_id: options.experimentId,
      ...(options.runName ? { run_name: options.runName } : {}),
      start_time: options.startTime ?? Date.now(),
      tags: options.tags ?? [],
    });
    return r.run.info;
  }

  async updateRun(
    runId: string,
    status: 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED',
    endTime?: number,
  ): Promise<RunInfo> {
    const r = await this.request<{ run_info: RunInfo }>('POST', '/api/2.0/mlflow/runs/update', {
      run_id: runId,
      status,
      ...(endTime !== undefined ? { end_time: endTime } : {}),
    });
    return r.run_info;
  }

  async getRun(runId: string): Promise<Run> {
    const r = await this.request<{ run: Run }>(
      'GET',
      `/api/2.0/mlflow/runs/get?run_id=${encodeURIComponent(runId)}`,
    );
    return r.run;
  }

  /** All runs matching a filter, every page. */
  async searchRuns(experimentIds: string[], filter = ''): Promise<Run[]> {
    const runs: Run[] = [];
    let pageToken: string | undefined;
    do {
      const r = await this.request<{ runs?: Run[]; next_page_token?: string }>(
        'POST',
        '/api/2.0/mlflow/runs/search',
        {
          experiment_ids: experimentIds,
          filter,
          max_results: 1000,
          ...(pageToken ? { page_token: pageToken } : {}),
        },
      );
      runs.push(...(r.runs ?? []));
      pageToken = r.next_page_token;
    } while (pageToken);
    return runs;
  }

  /** Logs metrics, params and tags, split into requests within the server's limits. */
  async logBatch(
    runId: string,
    batch: { metrics?: Metric[]; params?: KeyValue[]; tags?: KeyValue[] },
  ): Promise<void> {
    for (const chunk of chunkLogBatch(batch)) {
      await this.request('POST', '/api/2.0/mlflow/runs/log-batch', {
        run_id: runId,
        metrics: chunk.metrics.map((m) => ({
          ...m,
          value: Number.isFinite(m.value) ? m.value : String(m.value), // "NaN", "Infinity"
        })),
        params: chunk.params,
        tags: chunk.tags,
      });
    }
  }

  async setTag(runId: string, key: string, value: string): Promise<void> {
    await this.request('POST', '/api/2.0/mlflow/runs/set-tag', { run_id: runId, key, value });
  }

  async logInputs(runId: string, inputs: DatasetInput[]): Promise<void> {
    await this.request('POST', '/api/2.0/mlflow/runs/log-inputs', {
      run_id: runId,
      datasets: inputs.map((d) => ({
        tags: d.context ? [{ key: 'mlflow.data.context', value: d.context }] : [],
        dataset: {
          name: d.name,
          digest: d.digest,
          source_type: d.sourceType,
          source: d.source,
        },
      })),
    });
  }

  /** Every point of one metric, every page. */
  async getMetricHistory(runId: string, key: string): Promise<Metric[]> {
    const out: Metric[] = [];
    let pageToken: string | undefined;
    do {
      const q = new URLSearchParams({ run_id: runId, metric_key: key, max_results: '25000' });
      if (pageToken) q.set('page_token', pageToken);
      const r = await this.request<{ metrics?: Metric[]; next_page_token?: string }>(
        'GET',
        `/api/2.0/mlflow/metrics/get-history?${q.toString()}`,
      );
      out.push(...(r.metrics ?? []));
      pageToken = r.next_page_token;
    } while (pageToken);
    return out;
  }

  // ---- artifacts, through the server's mlflow-artifacts proxy ----

  private artifactUrlPath(artifactUri: string, relPath: string): string {
    const parts = [...artifactProxyPath(artifactUri).split('/'), ...relPath.split('/')]
      .filter(Boolean)
      .map(encodeURIComponent);
    return `/api/2.0/mlflow-artifacts/artifacts/${parts.join('/')}`;
  }

  async uploadArtifact(
    artifactUri: string,
    relPath: string,
    data: Uint8Array | string,
  ): Promise<void> {
    await this.request('PUT', this.artifactUrlPath(artifactUri, relPath), undefined, {
      data,
      contentType: 'application/octet-stream',
    });
  }

  /** Lists the files under a run's artifact folder (one level). */
  async listArtifacts(
    artifactUri: string,
    relPath = '',
  ): Promise<{ path: string; is_dir?: boolean; file_size?: number }[]> {
    const q = new URLSearchParams({
      path: [artifactProxyPath(artifactUri), relPath].filter(Boolean).join('/'),
    });
    const r = await this.request<{
      files?: { path: string; is_dir?: boolean; file_size?: number }[];
    }>('GET', `/api/2.0/mlflow-artifacts/artifacts?${q.toString()}`);
    return r.files ?? [];
  }

  async downloadArtifact(artifactUri: string, relPath: string): Promise<Uint8Array> {
    const url = `${this.base}${this.artifactUrlPath(artifactUri, relPath)}`;
    const res = await this.fetchImpl(url, { headers: this.headers });
    if (!res.ok) {
      throw new TrackingError(
        `MLflow artifact download failed: HTTP ${res.status} for ${relPath}`,
        {
          status: res.status,
        },
      );
    }
    return new Uint8Array(await res.arrayBuffer());
  }
}

function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const s = Number(header);
  if (Number.isFinite(s)) return Math.min(60_000, Math.max(0, s * 1000));
  const t = Date.parse(header);
  return Number.isFinite(t) ? Math.min(60_000, Math.max(0, t - Date.now())) : undefined;
}
