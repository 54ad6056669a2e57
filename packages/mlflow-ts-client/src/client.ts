import { hasErrorCode, MlflowError } from './errors.js';
import { checkEntries, chunkLogBatch } from './limits.js';
import { HttpTransport, type ClientOptions, type RequestSpec } from './transport.js';
import type {
  ArtifactLocation,
  CreateExperimentRequest,
  CreateLoggedModelRequest,
  CreateRunRequest,
  DownloadArtifactRequest,
  Experiment,
  ExperimentTag,
  FileInfo,
  FinalizeLoggedModelRequest,
  GetMetricHistoryRequest,
  GetMetricHistoryResponse,
  ListLoggedModelArtifactsRequest,
  ListLoggedModelArtifactsResponse,
  LogBatchRequest,
  LoggedModel,
  LogInputsRequest,
  LogLoggedModelParamsRequest,
  LogMetricRequest,
  LogModelRequest,
  LogOutputsRequest,
  LogParamRequest,
  Metric,
  Run,
  RunInfo,
  RunStatus,
  SearchExperimentsRequest,
  SearchExperimentsResponse,
  SearchLoggedModelsRequest,
  SearchLoggedModelsResponse,
  SearchRunsRequest,
  SearchRunsResponse,
  SetLoggedModelTagsRequest,
  SetTagRequest,
  UpdateRunRequest,
  UploadArtifactRequest,
} from './types.js';
import { artifactProxyPath } from './uri.js';

type Query = RequestSpec['query'];

const API = '/api/2.0/mlflow';
const ARTIFACTS = '/api/2.0/mlflow-artifacts/artifacts';

/**
 * A typed client for the MLflow tracking REST API (MLflow 2.x / 3.x servers),
 * on `fetch`. Methods take the REST request message (field names as in MLflow's
 * REST reference) and return its answer, unwrapped when the answer has a single
 * field; `searchAll*` and `getMetricHistory` follow every page. Errors are
 * {@link MlflowError}: 429, 5xx and network errors are retried first (see
 * {@link ClientOptions}).
 *
 * @example
 * const mlflow = new MlflowClient('http://127.0.0.1:5000');
 * const experiment_id = await mlflow.getOrCreateExperiment('demo');
 * const run = await mlflow.createRun({ experiment_id, run_name: 'first' });
 */
export class MlflowClient {
  readonly http: HttpTransport;

  /**
   * @param trackingUri `http(s)://host:port[/prefix]` of an MLflow server.
   * @throws MlflowError MLFLOW_BAD_URI, MLFLOW_UNSUPPORTED_SCHEME
   */
  constructor(trackingUri: string, options: ClientOptions = {}) {
    this.http = new HttpTransport(trackingUri, options);
  }

  /** The server's base URL (credentials removed). */
  get base(): string {
    return this.http.base;
  }

  /** Replaces every credential this client holds in `text` with `***`. */
  redact(text: string): string {
    return this.http.redact(text);
  }

  /** Any REST call the typed methods do not cover; the answer's JSON. */
  async request<T>(spec: RequestSpec): Promise<T> {
    return this.http.json<T>(spec);
  }

  // ---- experiments ----

  /** `experiments/create`; returns the new experiment's id. RESOURCE_ALREADY_EXISTS if the name is taken. */
  async createExperiment(req: CreateExperimentRequest): Promise<string> {
    if (req.tags) checkEntries('tag', req.tags);
    const r = await this.post<{ experiment_id: string }>('/experiments/create', req);
    return r.experiment_id;
  }

  /** `experiments/get`. RESOURCE_DOES_NOT_EXIST for an unknown id. */
  async getExperiment(req: { experiment_id: string }): Promise<Experiment> {
    return (await this.get<{ experiment: Experiment }>('/experiments/get', req)).experiment;
  }

  /** `experiments/get-by-name`; undefined when no experiment has that name (deleted ones are found). */
  async getExperimentByName(req: { experiment_name: string }): Promise<Experiment | undefined> {
    try {
      return (await this.get<{ experiment: Experiment }>('/experiments/get-by-name', req))
        .experiment;
    } catch (e) {
      if (hasErrorCode(e, 'RESOURCE_DOES_NOT_EXIST')) return undefined;
      throw e;
    }
  }

  /**
   * The id of the experiment with this name, created if missing (like
   * `mlflow.set_experiment`), with `tags` when this call creates it (an existing
   * experiment's tags are left as they are). Another process creating it at the
   * same moment is fine: the loser of the race reads the winner's id.
   * @throws MlflowError MLFLOW_EXPERIMENT_DELETED when the name belongs to a deleted experiment.
   */
  async getOrCreateExperiment(name: string, tags: ExperimentTag[] = []): Promise<string> {
    const found = await this.getExperimentByName({ experiment_name: name });
    if (found) {
      if (found.lifecycle_stage === 'deleted') {
        throw new MlflowError(
          'MLFLOW_EXPERIMENT_DELETED',
          `MLflow experiment '${name}' is deleted`,
          {
            hint: `restore it (restoreExperiment({ experiment_id: '${found.experiment_id}' }), the MLflow UI or \`mlflow experiments restore\`), or use another name`,
          },
        );
      }
      return found.experiment_id;
    }
    try {
      return await this.createExperiment({ name, ...(tags.length ? { tags } : {}) });
    } catch (e) {
      if (!hasErrorCode(e, 'RESOURCE_ALREADY_EXISTS')) throw e;
      const again = await this.getExperimentByName({ experiment_name: name });
      if (!again) throw e;
      return again.experiment_id;
    }
  }

  /** `experiments/search`, one page (1000 experiments unless `max_results` says otherwise). */
  async searchExperiments(req: SearchExperimentsRequest = {}): Promise<SearchExperimentsResponse> {
    // the server refuses a search without max_results (it reads the missing field as 0)
    return this.post('/experiments/search', { max_results: 1000, ...req });
  }

  /** `experiments/search`, every page. */
  async searchAllExperiments(
    req: Omit<SearchExperimentsRequest, 'page_token'> = {},
  ): Promise<Experiment[]> {
    return allPages(
      (page_token) => this.searchExperiments({ ...req, ...(page_token ? { page_token } : {}) }),
      (r) => r.experiments,
    );
  }

  /** `experiments/set-experiment-tag` (overwrites), e.g. `mlflow.experimentKind`. */
  async setExperimentTag(req: {
    experiment_id: string;
    key: string;
    value: string;
  }): Promise<void> {
    checkEntries('tag', [req]);
    await this.post('/experiments/set-experiment-tag', req);
  }

  /** `experiments/delete` (moves it to the `deleted` lifecycle stage; restorable). */
  async deleteExperiment(req: { experiment_id: string }): Promise<void> {
    await this.post('/experiments/delete', req);
  }

  /** `experiments/restore` a deleted experiment (and its runs). */
  async restoreExperiment(req: { experiment_id: string }): Promise<void> {
    await this.post('/experiments/restore', req);
  }

  // ---- runs ----

  /** `runs/create`; `start_time` defaults to now. */
  async createRun(req: CreateRunRequest): Promise<Run> {
    if (req.tags) checkEntries('tag', req.tags);
    const body = { ...req, start_time: req.start_time ?? Date.now() };
    return (await this.post<{ run: Run }>('/runs/create', body)).run;
  }

  /** `runs/update`: status, end time and/or name. */
  async updateRun(req: UpdateRunRequest): Promise<RunInfo> {
    return (await this.post<{ run_info: RunInfo }>('/runs/update', req)).run_info;
  }

  /** Ends a run: `runs/update` with a final status (default FINISHED) and end time (default now). */
  async setTerminated(
    run_id: string,
    status: Exclude<RunStatus, 'RUNNING' | 'SCHEDULED'> = 'FINISHED',
    end_time = Date.now(),
  ): Promise<RunInfo> {
    return this.updateRun({ run_id, status, end_time });
  }

  /** `runs/get`: info, params, latest metrics, tags, inputs and outputs. */
  async getRun(req: { run_id: string }): Promise<Run> {
    const run = (await this.get<{ run: Run }>('/runs/get', req)).run;
    decodeMetrics(run.data.metrics);
    return run;
  }

  /** `runs/search`, one page. */
  async searchRuns(req: SearchRunsRequest): Promise<SearchRunsResponse> {
    const r = await this.post<SearchRunsResponse>('/runs/search', req);
    for (const run of r.runs ?? []) decodeMetrics(run.data.metrics);
    return r;
  }

  /** `runs/search`, every page (1000 runs per request unless `max_results` says otherwise). */
  async searchAllRuns(req: Omit<SearchRunsRequest, 'page_token'>): Promise<Run[]> {
    const first = { max_results: 1000, ...req };
    return allPages(
      (page_token) => this.searchRuns({ ...first, ...(page_token ? { page_token } : {}) }),
      (r) => r.runs,
    );
  }

  /** `runs/delete` (restorable). */
  async deleteRun(req: { run_id: string }): Promise<void> {
    await this.post('/runs/delete', req);
  }

  /** `runs/restore` a deleted run. */
  async restoreRun(req: { run_id: string }): Promise<void> {
    await this.post('/runs/restore', req);
  }

  // ---- params, metrics, tags, inputs, outputs ----

  /**
   * `runs/log-batch`, split into as many requests as the server's limits need
   * ({@link chunkLogBatch}). Every entry is checked against the length limits
   * first, so an over-long one refuses the whole batch before anything is sent;
   * a refusal by the server leaves the requests before it applied.
   * Re-logging a param with a different value is refused (INVALID_PARAMETER_VALUE).
   */
  async logBatch(req: LogBatchRequest): Promise<void> {
    checkEntries('metric', req.metrics ?? []);
    checkEntries('param', req.params ?? []);
    checkEntries('tag', req.tags ?? []);
    for (const chunk of chunkLogBatch(req)) {
      await this.post('/runs/log-batch', {
        run_id: req.run_id,
        metrics: chunk.metrics.map(encodeMetric),
        params: chunk.params,
        tags: chunk.tags,
      });
    }
  }

  /** `runs/log-metric`: one point (`step` defaults to 0 on the server). */
  async logMetric(req: LogMetricRequest): Promise<void> {
    checkEntries('metric', [req]);
    await this.post('/runs/log-metric', { ...req, value: encodeValue(req.value) });
  }

  /** `runs/log-parameter`. */
  async logParam(req: LogParamRequest): Promise<void> {
    checkEntries('param', [req]);
    await this.post('/runs/log-parameter', req);
  }

  /** `runs/set-tag` (overwrites). */
  async setTag(req: SetTagRequest): Promise<void> {
    checkEntries('tag', [req]);
    await this.post('/runs/set-tag', req);
  }

  /** `runs/log-inputs`: datasets (with `mlflow.data.context` tags, e.g. `train`) and/or logged models. */
  async logInputs(req: LogInputsRequest): Promise<void> {
    await this.post('/runs/log-inputs', req);
  }

  /** `runs/outputs`: logged models the run produced, each at a step. */
  async logOutputs(req: LogOutputsRequest): Promise<void> {
    await this.post('/runs/outputs', req);
  }

  /** `metrics/get-history`: every point of one metric, every page (25 000 per request by default). */
  async getMetricHistory(req: GetMetricHistoryRequest): Promise<Metric[]> {
    const q = { max_results: 25_000, ...req };
    return allPages(
      (page_token) =>
        this.get<GetMetricHistoryResponse>('/metrics/get-history', { ...q, page_token }),
      (r) => decodeMetrics(r.metrics),
    );
  }

  // ---- artifacts, through the server's mlflow-artifacts proxy ----

  /** Uploads one file (PUT overwrites) under a run's or a logged model's artifact root. */
  async uploadArtifact(req: UploadArtifactRequest): Promise<void> {
    await this.http.json({
      method: 'PUT',
      path: artifactUrlPath(req),
      raw: { data: req.data, contentType: req.content_type ?? 'application/octet-stream' },
    });
  }

  /** Lists one folder (not recursive); paths are relative to it. */
  async listArtifacts(req: ArtifactLocation): Promise<FileInfo[]> {
    const path = [artifactProxyPath(req.artifact_uri), relativeArtifactPath(req.path ?? '')]
      .filter(Boolean)
      .join('/');
    const r = await this.http.json<{ files?: FileInfo[] }>({
      method: 'GET',
      path: ARTIFACTS,
      query: { path },
    });
    return r.files ?? [];
  }

  /** Downloads one file's bytes. */
  async downloadArtifact(req: DownloadArtifactRequest): Promise<Uint8Array> {
    return this.http.bytes({ method: 'GET', path: artifactUrlPath(req) });
  }

  // ---- MLflow 3 logged models ----

  /** `logged-models` (create): a PENDING model; link it to a run with `source_run_id` and/or {@link logOutputs}. */
  async createLoggedModel(req: CreateLoggedModelRequest): Promise<LoggedModel> {
    checkEntries('param', req.params ?? []);
    checkEntries('tag', req.tags ?? []);
    return (await this.post<{ model: LoggedModel }>('/logged-models', req)).model;
  }

  /** `logged-models/{model_id}` (get). RESOURCE_DOES_NOT_EXIST for an unknown or deleted id. */
  async getLoggedModel(req: { model_id: string }): Promise<LoggedModel> {
    const path = modelPath(req.model_id);
    return (await this.http.json<{ model: LoggedModel }>({ method: 'GET', path })).model;
  }

  /** `logged-models/{model_id}` (finalize): READY once its artifacts are uploaded, or UPLOAD_FAILED. */
  async finalizeLoggedModel(req: FinalizeLoggedModelRequest): Promise<LoggedModel> {
    const path = modelPath(req.model_id);
    return (await this.http.json<{ model: LoggedModel }>({ method: 'PATCH', path, body: req }))
      .model;
  }

  /** `logged-models/search`, one page. */
  async searchLoggedModels(req: SearchLoggedModelsRequest): Promise<SearchLoggedModelsResponse> {
    return this.post('/logged-models/search', req);
  }

  /** `logged-models/search`, every page. */
  async searchAllLoggedModels(
    req: Omit<SearchLoggedModelsRequest, 'page_token'>,
  ): Promise<LoggedModel[]> {
    return allPages(
      (page_token) => this.searchLoggedModels({ ...req, ...(page_token ? { page_token } : {}) }),
      (r) => r.models,
    );
  }

  /** `logged-models/{model_id}/tags` (set, overwriting). */
  async setLoggedModelTags(req: SetLoggedModelTagsRequest): Promise<void> {
    checkEntries('tag', req.tags);
    await this.http.json({ method: 'PATCH', path: `${modelPath(req.model_id)}/tags`, body: req });
  }

  /** `logged-models/{model_id}/params` (log). */
  async logLoggedModelParams(req: LogLoggedModelParamsRequest): Promise<void> {
    checkEntries('param', req.params);
    await this.http.json({ method: 'POST', path: `${modelPath(req.model_id)}/params`, body: req });
  }

  /** `logged-models/{model_id}` (delete). */
  async deleteLoggedModel(req: { model_id: string }): Promise<void> {
    await this.http.json({ method: 'DELETE', path: modelPath(req.model_id) });
  }

  /** `logged-models/{model_id}/artifacts/directories`: one folder of the model's artifacts. */
  async listLoggedModelArtifacts(
    req: ListLoggedModelArtifactsRequest,
  ): Promise<ListLoggedModelArtifactsResponse> {
    return this.http.json({
      method: 'GET',
      path: `${modelPath(req.model_id)}/artifacts/directories`,
      query: { artifact_directory_path: req.artifact_directory_path },
    });
  }

  /**
   * Logs a model the way MLflow's `log_model` does: creates it (PENDING),
   * uploads its files to its artifact root, finalizes it READY and, when
   * `source_run_id` is given, records it as that run's output at `step`. If an
   * upload fails the model is finalized UPLOAD_FAILED and the error rethrown.
   */
  async logModel(req: LogModelRequest): Promise<LoggedModel> {
    const { files, step, ...create } = req;
    const model = await this.createLoggedModel(create);
    const { model_id, artifact_uri } = model.info;
    try {
      for (const f of files)
        await this.uploadArtifact({ artifact_uri, path: f.path, data: f.data });
    } catch (e) {
      await this.finalizeLoggedModel({ model_id, status: 'LOGGED_MODEL_UPLOAD_FAILED' }).catch(
        () => undefined, // the upload error is the one to report
      );
      throw e;
    }
    const ready = await this.finalizeLoggedModel({ model_id, status: 'LOGGED_MODEL_READY' });
    if (req.source_run_id) {
      await this.logOutputs({ run_id: req.source_run_id, models: [{ model_id, step: step ?? 0 }] });
    }
    return ready;
  }

  // ---- helpers ----

  private get<T>(path: string, query: object): Promise<T> {
    return this.http.json<T>({ method: 'GET', path: `${API}${path}`, query: query as Query });
  }

  private post<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.http.json<T>({ method: 'POST', path: `${API}${path}`, body });
  }
}

/** Follows `next_page_token` until the server stops sending one. */
async function allPages<R extends { next_page_token?: string }, T>(
  page: (token: string | undefined) => Promise<R>,
  items: (r: R) => T[] | undefined,
): Promise<T[]> {
  const out: T[] = [];
  let token: string | undefined;
  do {
    const r = await page(token);
    out.push(...(items(r) ?? []));
    token = r.next_page_token || undefined;
  } while (token);
  return out;
}

function modelPath(modelId: string): string {
  return `${API}/logged-models/${encodeURIComponent(modelId)}`;
}

/**
 * Proxy URL path of one file: the root's proxy path, then the file's path
 * segments, encoded. `.` and `..` segments are refused: the URL would resolve
 * them before the server sees them, reaching outside the artifact root.
 */
function artifactUrlPath(req: { artifact_uri: string; path: string }): string {
  const rel = relativeArtifactPath(req.path);
  const parts = [...artifactProxyPath(req.artifact_uri).split('/'), ...rel.split('/')]
    .filter(Boolean)
    .map(encodeURIComponent);
  return `${ARTIFACTS}/${parts.join('/')}`;
}

function relativeArtifactPath(path: string): string {
  const segments = path.split('/').filter(Boolean);
  if (path.includes('\\') || segments.some((s) => s === '.' || s === '..')) {
    throw new MlflowError('MLFLOW_INVALID_INPUT', `artifact path '${path}' leaves its folder`, {
      hint: "use a relative path of plain '/'-separated names (no '.', '..' or '\\')",
      errorCode: 'INVALID_PARAMETER_VALUE',
    });
  }
  return segments.join('/');
}

/** JSON has no NaN or Infinity; MLflow reads them as the strings "NaN", "Infinity", "-Infinity". */
function encodeValue(v: number): number | string {
  return Number.isFinite(v) ? v : String(v);
}

function encodeMetric(m: Metric): Omit<Metric, 'value'> & { value: number | string } {
  return { ...m, value: encodeValue(m.value) };
}

/** Turns the server's "NaN" / "Infinity" strings back into numbers, in place. */
function decodeMetrics(metrics: Metric[] | undefined): Metric[] | undefined {
  for (const m of metrics ?? []) if (typeof m.value === 'string') m.value = Number(m.value);
  return metrics;
}
