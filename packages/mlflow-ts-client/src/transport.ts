import { MlflowError } from './errors.js';
import { authFromEnv, parseTrackingUri, type MlflowAuth } from './uri.js';

export type FetchLike = typeof fetch;

export interface ClientOptions {
  /**
   * Credentials; default {@link authFromEnv} (MLFLOW_TRACKING_TOKEN, or
   * MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD). Pass `{}` for none.
   * Credentials in the URI apply where these give none.
   */
  auth?: MlflowAuth;
  /** Attempts per request, the first included (default 5). */
  attempts?: number;
  /** First backoff delay in ms; doubles per attempt up to maxBackoffMs (default 500 / 8000), +-25% jitter. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Longest `Retry-After` honoured, in ms (default 60 000); longer ones are cut to it. */
  maxRetryAfterMs?: number;
  /** Per-attempt timeout in ms, answer body included (default 30 000). */
  timeoutMs?: number;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  fetch?: FetchLike;
  sleep?: (ms: number) => Promise<void>;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** One REST call: a JSON body, or raw bytes with their content type. */
export interface RequestSpec {
  method: HttpMethod;
  /** Path under the server's base URL, e.g. `/api/2.0/mlflow/runs/get`. */
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  raw?: { data: Uint8Array | string; contentType: string };
}

const RETRYABLE_STATUS = (s: number) => s === 429 || s >= 500;
const AUTH_HINT =
  'check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD';
const PERMISSION_HINT =
  "use credentials allowed to do this (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD), or ask the server's admin for the permission";

/**
 * Why a request got no answer, and the fix, from what `fetch` threw: Node's
 * fetch (undici) throws `TypeError('fetch failed')` with the socket's error as
 * `cause` (its `code`: ECONNREFUSED, ENOTFOUND...; no code for a port the Fetch
 * standard blocks, "bad port"); `AbortSignal.timeout` throws a `TimeoutError`.
 */
export function networkFailure(
  e: unknown,
  base: string,
  timeoutMs: number,
): { reason: string; hint: string } {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const url = new URL(base);
  const host = url.hostname;
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  const reachable = `check that ${base} is reachable from this machine (a firewall, VPN or ssh tunnel in between?)`;
  if (err?.name === 'TimeoutError') {
    return { reason: `TimeoutError: no answer within ${timeoutMs / 1000} s`, hint: reachable };
  }
  const code = err?.cause?.code;
  const detail = err?.cause?.message;
  switch (code) {
    case 'ECONNREFUSED':
      return {
        reason: `ECONNREFUSED: nothing listens on ${host}:${port}`,
        hint: `start the server (mlflow server --host ${host} --port ${port} ...), or correct the address`,
      };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return {
        reason: `${code}: the host name ${host} does not resolve`,
        hint: 'correct the host name in the address',
      };
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return {
        reason: `${code}: the connection was closed without an answer`,
        hint: `check that ${base} is an MLflow server and its scheme (http or https) is the one it serves`,
      };
    case undefined:
      break;
    default:
      return { reason: detail ? `${code}: ${detail}` : code, hint: reachable };
  }
  if (detail === 'bad port') {
    return {
      reason: `port ${port} is one the Fetch standard blocks (fetch refuses it: "bad port")`,
      hint: 'serve MLflow on another port (e.g. 5000) and use that address',
    };
  }
  const why = detail ?? err?.message;
  return {
    reason: why ? `${err?.name ?? 'Error'}: ${why}` : String(e),
    hint: reachable,
  };
}

/**
 * HTTP on `fetch` for the MLflow REST API: auth headers, per-attempt timeouts,
 * retries of network errors, 429 and 5xx with exponential backoff (a server's
 * `Retry-After`, seconds or HTTP date, is waited out instead), and coded
 * errors with every credential removed from their messages.
 */
export class HttpTransport {
  /** The server's base URL, without credentials or trailing slash. */
  readonly base: string;
  private readonly headers: Record<string, string>;
  private readonly secrets: string[] = [];
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly timeoutMs: number;
  private readonly fetchImpl: FetchLike;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(trackingUri: string, options: ClientOptions = {}) {
    const parsed = parseTrackingUri(trackingUri);
    this.base = parsed.base;
    this.headers = { ...(options.headers ?? {}) };
    this.setAuth({ ...parsed.auth, ...(options.auth ?? authFromEnv()) });
    this.attempts = Math.max(1, options.attempts ?? 5);
    this.backoffMs = options.backoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 8000;
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 60_000;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.fetchImpl = options.fetch ?? fetch;
    this.sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  private setAuth(auth: MlflowAuth): void {
    if (auth.token) {
      this.headers.authorization = `Bearer ${auth.token}`;
      this.secrets.push(auth.token);
    } else if (auth.username !== undefined || auth.password !== undefined) {
      const basic = Buffer.from(`${auth.username ?? ''}:${auth.password ?? ''}`).toString('base64');
      this.headers.authorization = `Basic ${basic}`;
      this.secrets.push(basic);
      if (auth.password) this.secrets.push(auth.password);
    }
  }

  /** Replaces every credential in a text with `***`. */
  redact(text: string): string {
    let out = text;
    for (const s of this.secrets) if (s) out = out.split(s).join('***');
    return out;
  }

  /** Sends a request and parses the JSON answer (`{}` for an empty body). */
  async json<T>(spec: RequestSpec): Promise<T> {
    const body = await this.send(spec);
    if (body.length === 0) return {} as T;
    const text = Buffer.from(body).toString('utf8');
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      if (looksLikeHtml(text)) throw this.notMlflow(describe(spec), 200, text, e);
      throw new MlflowError(
        'MLFLOW_BAD_RESPONSE',
        this.redact(
          `MLflow ${describe(spec)} answered with a body that is not JSON: ${text.slice(0, 200)}`,
        ),
        { cause: e, hint: `check that ${this.base} is an MLflow tracking server` },
      );
    }
  }

  /** Sends a request and returns the answer's bytes. */
  async bytes(spec: RequestSpec): Promise<Uint8Array> {
    return this.send(spec);
  }

  private async send(spec: RequestSpec): Promise<Uint8Array> {
    const url = `${this.base}${spec.path}${queryString(spec.query)}`;
    const what = describe(spec);
    let last: MlflowError | undefined;
    let retryAfter: number | undefined;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      if (attempt > 0) await this.sleep(retryAfter ?? this.backoff(attempt));
      let res: Response;
      let body: Uint8Array;
      try {
        res = await this.fetchImpl(url, this.init(spec));
        body = new Uint8Array(await res.arrayBuffer());
      } catch (e) {
        last = this.unreachable(what, e);
        retryAfter = undefined;
        continue;
      }
      if (res.ok) return body;
      last = this.refusal(res.status, body, what);
      if (!last.retryable) throw last;
      retryAfter = retryAfterMs(res.headers.get('retry-after'), this.maxRetryAfterMs);
    }
    throw last!;
  }

  /** Delay before retry `attempt` (1-based): backoffMs * 2^(attempt-1), capped, +-25% jitter. */
  private backoff(attempt: number): number {
    const base = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (attempt - 1));
    return base * (0.75 + 0.5 * Math.random());
  }

  private init(spec: RequestSpec): RequestInit {
    const headers: Record<string, string> = { ...this.headers };
    let body: Uint8Array | string | undefined;
    if (spec.raw) {
      headers['content-type'] = spec.raw.contentType;
      body = spec.raw.data;
    } else if (spec.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(spec.body);
    }
    return { method: spec.method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) };
  }

  private unreachable(what: string, e: unknown): MlflowError {
    const { reason, hint } = networkFailure(e, this.base, this.timeoutMs);
    return new MlflowError(
      'MLFLOW_UNREACHABLE',
      this.redact(`MLflow server at ${this.base} unreachable (${what}: ${reason})`),
      { retryable: true, cause: e, hint: this.redact(hint) },
    );
  }

  /** An HTML answer where MLflow's REST API answers JSON: the address is not an MLflow server. */
  private notMlflow(what: string, status: number, text: string, cause?: unknown): MlflowError {
    const title = /<title[^>]*>([^<]{0,120})/i.exec(text)?.[1]?.trim();
    return new MlflowError(
      'MLFLOW_NOT_MLFLOW_SERVER',
      this.redact(
        `${this.base} is not an MLflow tracking server: ${what} answered HTTP ${status} with an HTML page${title ? ` ('${title}')` : ''} instead of MLflow's JSON`,
      ),
      {
        status,
        hint: `use the address \`mlflow server\` listens on (its REST API answers at ${this.base}/api/2.0/mlflow/...); with a path prefix, include it in the URI`,
        ...(cause !== undefined ? { cause } : {}),
      },
    );
  }

  private refusal(status: number, body: Uint8Array, what: string): MlflowError {
    const text = Buffer.from(body).toString('utf8');
    let errorCode: string | undefined;
    let message = text.slice(0, 500);
    try {
      const j = JSON.parse(text) as { error_code?: string; message?: string };
      errorCode = j.error_code;
      if (j.message) message = j.message;
    } catch {
      /* not JSON (a proxy's HTML page, the auth app's plain text): keep the text */
    }
    const coded = errorCode ? { errorCode } : {};
    if (status !== 401 && status !== 403 && !RETRYABLE_STATUS(status) && looksLikeHtml(text)) {
      return this.notMlflow(what, status, text);
    }
    if (status === 401) {
      return new MlflowError(
        'MLFLOW_UNAUTHORIZED',
        this.redact(`MLflow server at ${this.base} refused the credentials (HTTP 401 on ${what})`),
        { status, ...coded, hint: AUTH_HINT },
      );
    }
    if (status === 403) {
      return new MlflowError(
        'MLFLOW_PERMISSION_DENIED',
        this.redact(`MLflow server at ${this.base} denied ${what} (HTTP 403: ${message})`),
        { status, ...coded, hint: PERMISSION_HINT },
      );
    }
    return new MlflowError(
      'MLFLOW_HTTP_ERROR',
      this.redact(
        `MLflow ${what} failed: HTTP ${status}${errorCode ? ` ${errorCode}` : ''}: ${message}`,
      ),
      { status, ...coded, retryable: RETRYABLE_STATUS(status) },
    );
  }
}

/** True for a body that is an HTML (or XML) page rather than JSON. */
function looksLikeHtml(text: string): boolean {
  return /^\s*</.test(text);
}

function describe(spec: RequestSpec): string {
  return `${spec.method} ${spec.path}`;
}

function queryString(query: RequestSpec['query']): string {
  if (!query) return '';
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * `Retry-After` in ms: delay-seconds or an HTTP date (RFC 9110 10.2.3), clamped
 * to [0, max]; undefined when absent or unreadable.
 */
export function retryAfterMs(header: string | null, max = 60_000): number | undefined {
  if (!header) return undefined;
  const s = Number(header);
  if (header.trim() !== '' && Number.isFinite(s)) return Math.min(max, Math.max(0, s * 1000));
  const t = Date.parse(header);
  return Number.isFinite(t) ? Math.min(max, Math.max(0, t - Date.now())) : undefined;
}
