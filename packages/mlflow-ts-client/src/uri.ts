import { MlflowError } from './errors.js';

/** Credentials: a bearer token, or a user name and password for HTTP basic auth. */
export interface MlflowAuth {
  token?: string;
  username?: string;
  password?: string;
}

/**
 * Credentials from MLflow's standard variables: MLFLOW_TRACKING_TOKEN (bearer),
 * MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (basic). Empty ones are absent.
 */
export function authFromEnv(env: NodeJS.ProcessEnv = process.env): MlflowAuth {
  const auth: MlflowAuth = {};
  if (env.MLFLOW_TRACKING_TOKEN) auth.token = env.MLFLOW_TRACKING_TOKEN;
  if (env.MLFLOW_TRACKING_USERNAME) auth.username = env.MLFLOW_TRACKING_USERNAME;
  if (env.MLFLOW_TRACKING_PASSWORD) auth.password = env.MLFLOW_TRACKING_PASSWORD;
  return auth;
}

/**
 * Parses a tracking URI: http(s) only. Credentials written into the URI
 * (`http://user:pass@host`) are moved to basic auth, since fetch refuses them,
 * and removed from the base URL the client shows. Throws MlflowError
 * `MLFLOW_BAD_URI` or `MLFLOW_UNSUPPORTED_SCHEME`.
 */
export function parseTrackingUri(uri: string): { base: string; auth: MlflowAuth } {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new MlflowError('MLFLOW_BAD_URI', `tracking URI '${uri}' is not a URL`, {
      hint: 'use the address of an MLflow server, e.g. http://127.0.0.1:5000',
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new MlflowError(
      'MLFLOW_UNSUPPORTED_SCHEME',
      `tracking URI scheme '${url.protocol}' is not supported; this client talks to MLflow over HTTP`,
      { hint: 'start `mlflow server` and use its http://host:port address' },
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
 * The part of an `mlflow-artifacts:/...` URI after the scheme (and host, if
 * any): the path the server's artifact proxy serves it under. Throws MlflowError
 * `MLFLOW_NOT_PROXIED` for any other URI (the server writes those itself).
 */
export function artifactProxyPath(artifactUri: string): string {
  const m = /^mlflow-artifacts:(?:\/\/[^/]*)?\/(.*)$/.exec(artifactUri);
  if (!m) {
    throw new MlflowError(
      'MLFLOW_NOT_PROXIED',
      `the server stores these artifacts at '${artifactUri}', which it does not proxy`,
      {
        hint: 'start `mlflow server` with --artifacts-destination (artifact proxying is on by default) so artifacts can be uploaded over HTTP',
      },
    );
  }
  return m[1]!.replace(/\/+$/, '');
}
