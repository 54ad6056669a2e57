import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { TrackingError } from '@contrast/core';
import type { ClientOptions } from './client.js';
import { hasMlflowState, MlflowUploader } from './uploader.js';

export interface SyncedRun {
  dir: string;
  runId: string;
  experimentId: string;
  metricRecordsSent: number;
  metricPointsSent: number;
  artifacts: number;
  /** Metric records this sync uploaded (0 when the run was already complete). */
  uploadedNow: number;
}

/**
 * Uploads whatever a run folder still has spooled (`contrast sync`). A study
 * folder syncs its own (parent) run first, then every run under `runs/`.
 * Safe to repeat: already-accepted records are never sent twice.
 */
export async function syncRuns(
  target: string,
  options: ClientOptions & { warn?: (line: string) => void } = {},
): Promise<SyncedRun[]> {
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
  const out: SyncedRun[] = [];
  for (const d of dirs) {
    const u = MlflowUploader.open(d, options);
    const before = u.state.metricRecordsSent;
    await u.pump();
    if (!u.isComplete()) {
      throw new TrackingError(`${d}: upload incomplete after sync`, {
        hint: 'run contrast sync again',
      });
    }
    out.push({
      dir: d,
      runId: u.state.runId!,
      experimentId: u.state.experimentId!,
      metricRecordsSent: u.state.metricRecordsSent,
      metricPointsSent: u.state.metricPointsSent,
      artifacts: u.state.artifacts.length,
      uploadedNow: u.state.metricRecordsSent - before,
    });
  }
  return out;
}
