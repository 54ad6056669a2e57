import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { TrackingError } from '@contrast/core';
import { hasMlflowState, MlflowUploader } from '@contrast/tracking';
import type { EncoderSidecar } from './sidecar.js';

/** What `logExportedModel` recorded in MLflow. */
export interface LoggedExport {
  modelId: string;
  runId: string;
  /** Files uploaded under the model's artifact root. */
  files: number;
}

/** Every file under `dir`, paths relative to it ('/'-separated), sorted. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(dir, path).split('\\').join('/'));
    }
  };
  walk(dir);
  return out;
}

/**
 * Logs an export folder as an MLflow logged model (MLflow 3's `LoggedModel`)
 * linked to the run it came from: name `encoder`, the export's files as the
 * model's artifacts, the architecture as model params, the formats as a tag,
 * and the run's output at its last step (what `mlflow.log_model` records). Only
 * for a run tracked in MLflow (`mlflow.json`); an untracked run returns
 * undefined. A server that is away or refuses is reported through `log` and
 * loses nothing: the export folder is complete either way, and exporting again
 * logs it then.
 */
export async function logExportedModel(
  runPath: string,
  dir: string,
  sidecar: EncoderSidecar,
  log: (line: string) => void,
): Promise<LoggedExport | undefined> {
  if (!hasMlflowState(runPath)) return undefined;
  const uploader = MlflowUploader.open(runPath, { warn: log });
  const { runId, experimentId } = uploader.state;
  if (!runId || !experimentId) {
    log(
      `[mlflow] the run has not reached the server yet: contrast sync ${runPath}, then export again`,
    );
    return undefined;
  }
  const files = filesUnder(dir);
  const arch = sidecar.architecture;
  try {
    const model = await uploader.client.logModel({
      experiment_id: experimentId,
      name: 'encoder',
      model_type: 'contrast-encoder',
      source_run_id: runId,
      step: sidecar.training?.steps ?? 0,
      params: [
        { key: 'encoder', value: arch.encoder },
        { key: 'feature_dim', value: String(sidecar.features.dim) },
        {
          key: 'input',
          value: `${sidecar.input.height}x${sidecar.input.width}x${sidecar.input.channels}`,
        },
      ],
      tags: [{ key: 'contrast.formats', value: Object.keys(sidecar.files).join(',') }],
      files: files.map((path) => ({ path, data: readFileSync(join(dir, path)) })),
    });
    log(`[mlflow] logged model ${model.info.model_id} (${files.length} files) for run ${runId}`);
    return { modelId: model.info.model_id, runId, files: files.length };
  } catch (e) {
    if (!(e instanceof TrackingError)) throw e;
    log(
      `[mlflow] the model was not logged (${(e as Error).message}); export again when the server answers`,
    );
    return undefined;
  }
}
