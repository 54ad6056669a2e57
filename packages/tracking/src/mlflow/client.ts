import { TrackingError } from '@contrast/core';
import {
  artifactProxyPath as proxyPath,
  hasErrorCode,
  MlflowClient as RestClient,
  MlflowError,
  parseTrackingUri as parseUri,
  type ClientOptions,
  type Experiment,
  type FileInfo,
  type LoggedModel,
  type LogModelRequest,
  type Metric,
  type MlflowAuth,
  type MlflowErrorCode,
  type Run,
  type RunInfo,
} from 'mlflow-ts-client';

/**
 * Contrast's view of the MLflow REST client in `mlflow-ts-client`: the calls the
 * spool, tracker and sync make, with every MlflowError turned into Contrast's
 * TrackingError (same message, `mlflowCode` = the server's error_code,
 * `retryable`, `status`), so callers and the CLI see one error family.
 */

export {
  authFromEnv,
  chunkLogBatch,
  LOG_BATCH_LIMITS,
  MLFLOW_LIMITS,
  type ClientOptions,
  type Experiment,
  type FetchLike,
  type Metric,
  type MlflowAuth,
  type MlflowErrorCode,
  type Run,
  type RunInfo,
} from 'mlflow-ts-client';

export interface KeyValue {
  key: string;
  value: string;
}

/** A dataset a run reads, as kept in the run folder's `mlflow.json`. */
export interface DatasetInput {
  name: string;
  digest: string;
  sourceType: string;
  source: string;
  /** `mlflow.data.context` input tag, e.g. `train`. */
  context?: string;
}

/**
 * MLflow 3's experiment-kind tag and the value for model training (the UI's
 * `ExperimentKind.CUSTOM_MODEL_DEVELOPMENT`). UIs before the workflow selector
 * choose an experiment's view (runs, or GenAI's traces and evaluations) from it;
 * the UI of 3.17 only writes it (see {@link UI_WORKFLOW}).
 */
export const EXPERIMENT_KIND_TAG = {
  key: 'mlflow.experimentKind',
  value: 'custom_model_development',
};

/**
 * What chooses the MLflow UI's view in MLflow 3.17 (pinned in scripts/setup.sh):
 * the browser's workflow type, the `workflowType` query parameter of the page's
 * route, else the `mlflow.workflowType` key of the browser's localStorage, else
 * `genai`. The experiment's kind is read from it, not from {@link EXPERIMENT_KIND_TAG}
 * (mlflow/mlflow#20161), so a fresh browser opens any experiment on its GenAI
 * overview and a run under "Evaluation runs". Links carry `machine_learning`.
 */
export const UI_WORKFLOW = { param: 'workflowType', value: 'machine_learning' } as const;

/**
 * The MLflow UI page of an experiment, or of one of its runs, in the
 * model-training view: `<base>/#/experiments/<id>[/runs/<run id>]?workflowType=machine_learning`
 * (the UI routes in the fragment; {@link UI_WORKFLOW} says why the parameter).
 * `base` is the server address without credentials.
 */
export function mlflowUiUrl(base: string, experimentId: string, runId?: string): string {
  const route = `/experiments/${experimentId}${runId ? `/runs/${runId}` : ''}`;
  return `${base}/#${route}?${UI_WORKFLOW.param}=${UI_WORKFLOW.value}`;
}

/** Contrast's wording where the client's is generic. */
const CONTRAST_WORDING: Partial<Record<MlflowErrorCode, (e: MlflowError) => [string, string?]>> = {
  MLFLOW_UNSUPPORTED_SCHEME: (e) => [
    e.detail.replace('this client talks', 'Contrast talks'),
    'start `mlflow server` and use its http://host:port address (runs are always kept in the local run directory too)',
  ],
  MLFLOW_NOT_PROXIED: (e) => [e.detail.replace('these artifacts', "this run's artifacts"), e.hint],
  MLFLOW_NOT_MLFLOW_SERVER: (e) => [
    e.detail,
    'set tracking.uri (or MLFLOW_TRACKING_URI) to the http://host:port address `mlflow server` prints when it starts, or tracking.uri=off to train without MLflow',
  ],
  MLFLOW_EXPERIMENT_DELETED: (e) => [
    e.detail,
    'restore it in the MLflow UI (or with `mlflow experiments restore`), or use another tracking.experiment',
  ],
};

/** An MlflowError as a TrackingError (the original as its cause); anything else unchanged. */
export function toTrackingError(e: unknown): unknown {
  if (!(e instanceof MlflowError)) return e;
  const [message, hint] = CONTRAST_WORDING[e.code]?.(e) ?? [e.detail, e.hint];
  return new TrackingError(message, {
    cause: e,
    ...(hint ? { hint } : {}),
    ...(e.status !== undefined ? { status: e.status } : {}),
    ...(e.errorCode ? { mlflowCode: e.errorCode } : {}),
    retryable: e.retryable,
  });
}

/** The mlflow-ts-client code (e.g. `MLFLOW_UNREACHABLE`) of a TrackingError made by {@link toTrackingError}. */
export function clientErrorCode(e: unknown): MlflowErrorCode | undefined {
  return e instanceof TrackingError && e.cause instanceof MlflowError ? e.cause.code : undefined;
}

function contrast<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw toTrackingError(e);
  }
}

async function contrastAsync<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw toTrackingError(e);
  }
}

/** {@link parseUri} with TrackingError. */
export function parseTrackingUri(uri: string): { base: string; auth: MlflowAuth } {
  return contrast(() => parseUri(uri));
}

/** {@link proxyPath} with TrackingError. */
export function artifactProxyPath(artifactUri: string): string {
  return contrast(() => proxyPath(artifactUri));
}

/** The MLflow calls Contrast makes, on `mlflow-ts-client`'s MlflowClient; throws TrackingError. */
export class MlflowClient {
  readonly rest: RestClient;

  constructor(uri: string, options: ClientOptions = {}) {
    this.rest = contrast(() => new RestClient(uri, options));
  }

  get base(): string {
    return this.rest.base;
  }

  redact(text: string): string {
    return this.rest.redact(text);
  }

  getExperimentByName(name: string): Promise<Experiment | undefined> {
    return contrastAsync(this.rest.getExperimentByName({ experiment_name: name }));
  }

  createExperiment(name: string): Promise<string> {
    return contrastAsync(this.rest.createExperiment({ name }));
  }

  /**
   * Get-or-create; when another process creates it first, the existing id is
   * returned. The experiment is tagged for model training ({@link EXPERIMENT_KIND_TAG}):
   * when created, and when found without a kind (a kind set by hand is kept).
   */
  async getOrCreateExperiment(name: string): Promise<string> {
    const found = await this.getExperimentByName(name);
    if (found?.lifecycle_stage === 'active') {
      if (!found.tags?.some((t) => t.key === EXPERIMENT_KIND_TAG.key)) {
        await contrastAsync(
          this.rest.setExperimentTag({
            experiment_id: found.experiment_id,
            ...EXPERIMENT_KIND_TAG,
          }),
        );
      }
      return found.experiment_id;
    }
    if (!found) {
      try {
        return await this.rest.createExperiment({ name, tags: [EXPERIMENT_KIND_TAG] });
      } catch (e) {
        // another process created it first: read its id below
        if (!hasErrorCode(e, 'RESOURCE_ALREADY_EXISTS')) throw toTrackingError(e);
      }
    }
    // created meanwhile, or deleted (the REST client's get-or-create says so, with the fix)
    return contrastAsync(this.rest.getOrCreateExperiment(name));
  }

  async createRun(options: {
    experimentId: string;
    runName?: string;
    startTime?: number;
    tags?: KeyValue[];
  }): Promise<RunInfo> {
    const run = await contrastAsync(
      this.rest.createRun({
        experiment_id: options.experimentId,
        ...(options.runName ? { run_name: options.runName } : {}),
        start_time: options.startTime ?? Date.now(),
        tags: options.tags ?? [],
      }),
    );
    return run.info;
  }

  updateRun(
    runId: string,
    status: 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED',
    endTime?: number,
  ): Promise<RunInfo> {
    return contrastAsync(
      this.rest.updateRun({
        run_id: runId,
        status,
        ...(endTime !== undefined ? { end_time: endTime } : {}),
      }),
    );
  }

  getRun(runId: string): Promise<Run> {
    return contrastAsync(this.rest.getRun({ run_id: runId }));
  }

  /** All runs matching a filter, every page. */
  searchRuns(experimentIds: string[], filter = ''): Promise<Run[]> {
    return contrastAsync(this.rest.searchAllRuns({ experiment_ids: experimentIds, filter }));
  }

  /** Logs metrics, params and tags, split into requests within the server's limits. */
  logBatch(
    runId: string,
    batch: { metrics?: Metric[]; params?: KeyValue[]; tags?: KeyValue[] },
  ): Promise<void> {
    return contrastAsync(this.rest.logBatch({ run_id: runId, ...batch }));
  }

  setTag(runId: string, key: string, value: string): Promise<void> {
    return contrastAsync(this.rest.setTag({ run_id: runId, key, value }));
  }

  logInputs(runId: string, inputs: DatasetInput[]): Promise<void> {
    const datasets = inputs.map((d) => ({
      tags: d.context ? [{ key: 'mlflow.data.context', value: d.context }] : [],
      dataset: { name: d.name, digest: d.digest, source_type: d.sourceType, source: d.source },
    }));
    return contrastAsync(this.rest.logInputs({ run_id: runId, datasets }));
  }

  /** Every point of one metric, every page. */
  getMetricHistory(runId: string, key: string): Promise<Metric[]> {
    return contrastAsync(this.rest.getMetricHistory({ run_id: runId, metric_key: key }));
  }

  uploadArtifact(artifactUri: string, relPath: string, data: Uint8Array | string): Promise<void> {
    return contrastAsync(
      this.rest.uploadArtifact({ artifact_uri: artifactUri, path: relPath, data }),
    );
  }

  /** Lists the files under a run's artifact folder (one level). */
  listArtifacts(artifactUri: string, relPath = ''): Promise<FileInfo[]> {
    return contrastAsync(this.rest.listArtifacts({ artifact_uri: artifactUri, path: relPath }));
  }

  downloadArtifact(artifactUri: string, relPath: string): Promise<Uint8Array> {
    return contrastAsync(this.rest.downloadArtifact({ artifact_uri: artifactUri, path: relPath }));
  }

  /**
   * MLflow 3's logged model: created, its files uploaded, finalized READY, and
   * recorded as the output of `source_run_id` (mlflow-ts-client's logModel).
   */
  logModel(req: LogModelRequest): Promise<LoggedModel> {
    return contrastAsync(this.rest.logModel(req));
  }
}
