/**
 * The client's one error class. `code` says which kind of failure it is (stable,
 * for scripts and tests to match on); `errorCode` is MLflow's own `error_code`
 * (from the server's answer, or the code the server would have used when the
 * client refuses a request before sending it); `retryable` is true for network
 * errors, HTTP 429 and 5xx. Messages never contain a credential.
 */
export type MlflowErrorCode =
  /** The tracking URI is not a URL. */
  | 'MLFLOW_BAD_URI'
  /** The tracking URI is a URL whose scheme the client cannot talk to (only http and https). */
  | 'MLFLOW_UNSUPPORTED_SCHEME'
  /** No answer: connection refused, DNS failure, reset or timeout. Retryable. */
  | 'MLFLOW_UNREACHABLE'
  /** HTTP 401: the server refused the credentials (or wants some). */
  | 'MLFLOW_UNAUTHORIZED'
  /** HTTP 403: the credentials are good but not allowed to make this call. */
  | 'MLFLOW_PERMISSION_DENIED'
  /** Any other non-2xx answer; `status` and `errorCode` say which. */
  | 'MLFLOW_HTTP_ERROR'
  /** A 2xx answer whose body is not the JSON the endpoint promises. */
  | 'MLFLOW_BAD_RESPONSE'
  /**
   * The address answered, but not as an MLflow server: an HTML page or another
   * non-JSON body where the REST API answers JSON (a web server, a UI, a proxy's
   * page). Not retryable: the address is wrong.
   */
  | 'MLFLOW_NOT_MLFLOW_SERVER'
  /** Refused by the client before sending: over a server limit (key or value length). */
  | 'MLFLOW_INVALID_INPUT'
  /** An artifact URI the server does not serve through its `mlflow-artifacts` proxy. */
  | 'MLFLOW_NOT_PROXIED'
  /** Get-or-create found the experiment, but deleted. */
  | 'MLFLOW_EXPERIMENT_DELETED'
  /** testing: no `mlflow` executable to start a server with. */
  | 'MLFLOW_NOT_INSTALLED'
  /** testing: `mlflow server` exited or did not answer /health in time. */
  | 'MLFLOW_SERVER_START';

export interface MlflowErrorOptions {
  /** The fix, in one sentence. */
  hint?: string;
  cause?: unknown;
  /** HTTP status of the refusing answer. */
  status?: number;
  /** MLflow's `error_code`, e.g. `RESOURCE_DOES_NOT_EXIST`, `INVALID_PARAMETER_VALUE`. */
  errorCode?: string;
  retryable?: boolean;
}

/**
 * Every failure the client reports: `code` (what kind), `detail` (the message
 * without the fix), `hint` (the fix), `status` (HTTP), `errorCode` (MLflow's),
 * `retryable`. The message is `detail`, then `fix: hint` on its own line.
 */
export class MlflowError extends Error {
  readonly code: MlflowErrorCode;
  /** The message without the fix. */
  readonly detail: string;
  readonly hint: string | undefined;
  readonly status: number | undefined;
  readonly errorCode: string | undefined;
  readonly retryable: boolean;

  constructor(code: MlflowErrorCode, detail: string, options: MlflowErrorOptions = {}) {
    super(options.hint ? `${detail}\n  fix: ${options.hint}` : detail, { cause: options.cause });
    this.name = 'MlflowError';
    this.code = code;
    this.detail = detail;
    this.hint = options.hint;
    this.status = options.status;
    this.errorCode = options.errorCode;
    this.retryable = options.retryable ?? false;
  }
}

/** True when `e` is an MlflowError whose server `error_code` is `errorCode`. */
export function hasErrorCode(e: unknown, errorCode: string): e is MlflowError {
  return e instanceof MlflowError && e.errorCode === errorCode;
}
