import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseTrackingUri } from './client.js';

/** `tracking.uri: off` turns MLflow tracking off, whatever MLFLOW_TRACKING_URI says. */
export const TRACKING_OFF = 'off';

/** What a run folder says about its tracking: its config.yaml's tracking.uri and mlflow.json's server. */
export interface RecordedTracking {
  path: string;
  /** tracking.uri in the run's config.yaml ('' when the run relied on MLFLOW_TRACKING_URI or was untracked). */
  configUri: string;
  /** The server in mlflow.json: where the run is tracked, however it was chosen. */
  stateUri?: string;
}

/** Where a run is tracked, and the line that tells the user why (undefined: nothing to say). */
export interface TrackingChoice {
  /** The MLflow server; '' = the run folder only. */
  uri: string;
  message?: string;
}

/** Reads what a run folder records about its tracking (missing files read as untracked). */
export function recordedTracking(runPath: string): RecordedTracking {
  const out: RecordedTracking = { path: runPath, configUri: '' };
  const config = join(runPath, 'config.yaml');
  if (existsSync(config)) {
    const doc = parse(readFileSync(config, 'utf8')) as { tracking?: { uri?: unknown } } | null;
    const uri = doc?.tracking?.uri;
    if (typeof uri === 'string') out.configUri = uri;
  }
  const state = join(runPath, 'mlflow.json');
  if (existsSync(state)) {
    const uri = (JSON.parse(readFileSync(state, 'utf8')) as { uri?: unknown }).uri;
    if (typeof uri === 'string' && uri) out.stateUri = uri;
  }
  return out;
}

/** The address as shown and compared: no credentials, no trailing slash. */
function shown(uri: string): string {
  try {
    return parseTrackingUri(uri).base;
  } catch {
    return uri.replace(/\/\/[^/@]*@/, '//***@'); // invalid: refused later, never shown with a secret
  }
}

/**
 * Chooses the MLflow server of a run.
 *
 * A new run: `tracking.uri`, else MLFLOW_TRACKING_URI, else none.
 *
 * A resumed run (`recorded` given): the run folder is the source of truth, so it
 * continues on the server in its mlflow.json (else its config.yaml's
 * tracking.uri), whatever the shell's MLFLOW_TRACKING_URI says: that variable is
 * ambient (set in a profile for new runs) and does not move a run. An explicit
 * `tracking.uri` that differs from the run's config.yaml wins: tracking moves to
 * that server (a new MLflow run there gets the whole run folder) or, for a run
 * untracked so far, starts. `tracking.uri: off` turns tracking off. Every choice
 * that is not the plain new-run default is explained in `message`.
 */
export function chooseTrackingUri(input: {
  configUri: string;
  envUri?: string | undefined;
  recorded?: RecordedTracking | undefined;
}): TrackingChoice {
  const { configUri, recorded } = input;
  const envUri = input.envUri ?? '';
  if (configUri === TRACKING_OFF) {
    const where = recorded?.stateUri
      ? `; its MLflow run on ${shown(recorded.stateUri)} is left as it is (contrast sync ${recorded.path} updates it later)`
      : '';
    return {
      uri: '',
      message: `MLflow tracking off (tracking.uri=${TRACKING_OFF}): the run is kept in its folder only${where}`,
    };
  }
  if (!recorded) return { uri: configUri || envUri };
  const previous = recorded.stateUri ?? recorded.configUri;
  if (configUri && shown(configUri) !== shown(recorded.configUri)) {
    const why = !previous
      ? 'this run, untracked so far, is tracked from now on (a new MLflow run gets the whole run folder)'
      : shown(previous) === shown(configUri)
        ? 'tracking continues there'
        : `overrides the run folder's ${shown(previous)}: a new MLflow run there gets the whole run folder`;
    return { uri: configUri, message: `tracking.uri=${shown(configUri)} given: ${why}` };
  }
  const env =
    envUri && (!previous || shown(envUri) !== shown(previous))
      ? ` MLFLOW_TRACKING_URI=${shown(envUri)} is not used for a resumed run (to track it there: --set tracking.uri=${shown(envUri)})`
      : '';
  if (!previous) {
    return env ? { uri: '', message: `this run was not tracked in MLflow;${env}` } : { uri: '' };
  }
  return {
    uri: previous,
    message: `tracking continues on ${shown(previous)} (recorded in the run folder).${env}`,
  };
}
