/**
 * Messages of the MLflow tracking REST API (2.0), field for field as in MLflow's
 * REST reference (https://mlflow.org/docs/latest/api_reference/rest-api.html) and
 * its `service.proto`. Times are milliseconds since the Unix epoch; int64 fields
 * arrive as JSON numbers. Optional fields are the ones the server may omit.
 */

/** MLflow's `RunStatus`. */
export type RunStatus = 'RUNNING' | 'SCHEDULED' | 'FINISHED' | 'FAILED' | 'KILLED';
/** MLflow's `ViewType`: which lifecycle stages a search returns. */
export type ViewType = 'ACTIVE_ONLY' | 'DELETED_ONLY' | 'ALL';
/** MLflow's `LoggedModelStatus`. */
export type LoggedModelStatus =
  | 'LOGGED_MODEL_STATUS_UNSPECIFIED'
  | 'LOGGED_MODEL_PENDING'
  | 'LOGGED_MODEL_READY'
  | 'LOGGED_MODEL_UPLOAD_FAILED';

/** A key and a string value: `Param`, `RunTag`, `ExperimentTag`, `InputTag`, `LoggedModelTag`... */
export interface KeyValue {
  key: string;
  value: string;
}
export type Param = KeyValue;
export type RunTag = KeyValue;
export type ExperimentTag = KeyValue;
export type InputTag = KeyValue;
export type LoggedModelTag = KeyValue;
export type LoggedModelParameter = KeyValue;

/**
 * One metric point. `value` may be NaN or +-Infinity (sent as "NaN", "Infinity";
 * the server stores +-Infinity as +-1.7976931348623157e308). `model_id`,
 * `dataset_name` and `dataset_digest` tie the point to a logged model / dataset.
 */
export interface Metric {
  key: string;
  value: number;
  timestamp: number;
  step: number;
  dataset_name?: string;
  dataset_digest?: string;
  model_id?: string;
  run_id?: string;
}

export interface Experiment {
  experiment_id: string;
  name: string;
  artifact_location?: string;
  /** `active` or `deleted`. */
  lifecycle_stage: string;
  last_update_time?: number;
  creation_time?: number;
  tags?: ExperimentTag[];
}

export interface RunInfo {
  run_id: string;
  /** Deprecated alias of run_id that servers still send. */
  run_uuid?: string;
  run_name?: string;
  experiment_id: string;
  user_id?: string;
  status: RunStatus;
  start_time?: number;
  end_time?: number;
  /** e.g. `mlflow-artifacts:/1/<run_id>/artifacts` when the server proxies artifacts. */
  artifact_uri: string;
  lifecycle_stage?: string;
}
export interface RunData {
  metrics?: Metric[];
  params?: Param[];
  tags?: RunTag[];
}
export interface Dataset {
  name: string;
  digest: string;
  source_type: string;
  source: string;
  schema?: string;
  profile?: string;
}
export interface DatasetInput {
  tags?: InputTag[];
  dataset: Dataset;
}
export interface ModelInput {
  model_id: string;
}
export interface ModelOutput {
  model_id: string;
  step: number;
}
export interface RunInputs {
  dataset_inputs?: DatasetInput[];
  model_inputs?: ModelInput[];
}
export interface RunOutputs {
  model_outputs?: ModelOutput[];
}
export interface Run {
  info: RunInfo;
  data: RunData;
  inputs?: RunInputs;
  outputs?: RunOutputs;
}

/** An entry of an artifact listing; `path` is relative to the listed folder. */
export interface FileInfo {
  path: string;
  is_dir?: boolean;
  file_size?: number;
}

export interface LoggedModelInfo {
  model_id: string;
  experiment_id: string;
  name: string;
  creation_timestamp_ms?: number;
  last_updated_timestamp_ms?: number;
  /** e.g. `mlflow-artifacts:/1/models/<model_id>/artifacts`. */
  artifact_uri: string;
  status: LoggedModelStatus;
  creator_id?: number;
  model_type?: string;
  source_run_id?: string;
  status_message?: string;
  tags?: LoggedModelTag[];
}
export interface LoggedModelData {
  params?: LoggedModelParameter[];
  metrics?: Metric[];
}
/** MLflow 3's logged model: a model with its own id, artifacts, params, tags and metrics. */
export interface LoggedModel {
  info: LoggedModelInfo;
  data?: LoggedModelData;
}

// ---- requests and paged responses ----

export interface CreateExperimentRequest {
  name: string;
  artifact_location?: string;
  tags?: ExperimentTag[];
}
export interface SearchExperimentsRequest {
  max_results?: number;
  page_token?: string;
  filter?: string;
  order_by?: string[];
  view_type?: ViewType;
}
export interface SearchExperimentsResponse {
  experiments?: Experiment[];
  next_page_token?: string;
}

export interface CreateRunRequest {
  experiment_id: string;
  user_id?: string;
  run_name?: string;
  /** Default: now. */
  start_time?: number;
  tags?: RunTag[];
}
export interface UpdateRunRequest {
  run_id: string;
  status?: RunStatus;
  end_time?: number;
  run_name?: string;
}
export interface SearchRunsRequest {
  experiment_ids: string[];
  /** e.g. `metrics.loss < 1 and tags.\`my.tag\` = 'x'`. */
  filter?: string;
  run_view_type?: ViewType;
  /** Page size (server default 1000, at most 50000). */
  max_results?: number;
  order_by?: string[];
  page_token?: string;
}
export interface SearchRunsResponse {
  runs?: Run[];
  next_page_token?: string;
}

export interface LogBatchRequest {
  run_id: string;
  metrics?: Metric[];
  params?: Param[];
  tags?: RunTag[];
}
export interface LogMetricRequest {
  run_id: string;
  key: string;
  value: number;
  timestamp: number;
  step?: number;
  model_id?: string;
  dataset_name?: string;
  dataset_digest?: string;
}
export interface LogParamRequest {
  run_id: string;
  key: string;
  value: string;
}
export interface SetTagRequest {
  run_id: string;
  key: string;
  value: string;
}
export interface LogInputsRequest {
  run_id: string;
  datasets?: DatasetInput[];
  models?: ModelInput[];
}
export interface LogOutputsRequest {
  run_id: string;
  models: ModelOutput[];
}
export interface GetMetricHistoryRequest {
  run_id: string;
  metric_key: string;
  /** Page size (server limit 25000). */
  max_results?: number;
}
export interface GetMetricHistoryResponse {
  metrics?: Metric[];
  next_page_token?: string;
}

export interface CreateLoggedModelRequest {
  experiment_id: string;
  name?: string;
  model_type?: string;
  /** The run that produced the model. */
  source_run_id?: string;
  params?: LoggedModelParameter[];
  tags?: LoggedModelTag[];
}
export interface FinalizeLoggedModelRequest {
  model_id: string;
  status: LoggedModelStatus;
}
export interface SearchLoggedModelsRequest {
  experiment_ids: string[];
  /** e.g. `name = 'encoder' and metrics.accuracy > 0.8`. */
  filter?: string;
  datasets?: { dataset_name: string; dataset_digest?: string }[];
  max_results?: number;
  order_by?: {
    field_name: string;
    ascending?: boolean;
    dataset_name?: string;
    dataset_digest?: string;
  }[];
  page_token?: string;
}
export interface SearchLoggedModelsResponse {
  models?: LoggedModel[];
  next_page_token?: string;
}
export interface SetLoggedModelTagsRequest {
  model_id: string;
  tags: LoggedModelTag[];
}
export interface LogLoggedModelParamsRequest {
  model_id: string;
  params: LoggedModelParameter[];
}
export interface ListLoggedModelArtifactsRequest {
  model_id: string;
  artifact_directory_path?: string;
}
export interface ListLoggedModelArtifactsResponse {
  root_uri?: string;
  files?: FileInfo[];
  next_page_token?: string;
}

// ---- artifacts through the server's mlflow-artifacts proxy ----

export interface ArtifactLocation {
  /** A run's `info.artifact_uri` or a logged model's `info.artifact_uri` (`mlflow-artifacts:/...`). */
  artifact_uri: string;
  /** Path under that root, `/`-separated; empty for the root itself. */
  path?: string;
}
export interface UploadArtifactRequest extends ArtifactLocation {
  path: string;
  data: Uint8Array | string;
  /** Default `application/octet-stream`. */
  content_type?: string;
}
export interface DownloadArtifactRequest extends ArtifactLocation {
  path: string;
}

/** One file of a model logged with `logModel`. */
export interface ModelFile {
  /** Path under the model's artifact root. */
  path: string;
  data: Uint8Array | string;
}
export interface LogModelRequest extends CreateLoggedModelRequest {
  /** Uploaded to the model's artifact root before it is marked READY. */
  files: ModelFile[];
  /** When `source_run_id` is set: the step at which the run outputs the model (default 0). */
  step?: number;
}
