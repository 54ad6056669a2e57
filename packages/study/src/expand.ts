import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import {
  applySettings,
  ConfigError,
  parseExperiment,
  parseWith,
  readExperimentFile,
  type ExperimentConfig,
} from '@contrast/core';
import { StudySchema, type Study } from './schema.js';

export interface StudyRun {
  /** Short hash of the resolved config: the run's identity (finished runs are skipped). */
  id: string;
  series: string;
  k: number;
  config: ExperimentConfig;
}

export function loadStudy(file: string): Study {
  return parseWith(StudySchema, readExperimentFile(file));
}

export function configHash(config: ExperimentConfig): string {
  // where a run is stored, tracked and checkpointed does not change what it computes
  const { tracking: _tracking, checkpoint: _checkpoint, ...rest } = config;
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0, 12);
}

/**
 * Base experiment <- study settings <- series settings <- point settings, then
 * `scale` multiplies the epochs and the training subset (capped at the full split).
 */
export function expandStudy(
  study: Study,
  file: string,
  options: { scale?: number; runsDir: string },
): StudyRun[] {
  const base = readExperimentFile(resolve(dirname(file), study.base));
  const scale = options.scale ?? 1;
  if (!(scale > 0)) throw new ConfigError('--scale', `must be > 0, got ${scale}`);
  const runs: StudyRun[] = [];
  for (const series of study.series) {
    for (const point of series.points) {
      const raw = applySettings(base, { ...study.set, ...series.set, ...point.set });
      let config: ExperimentConfig;
      try {
        config = parseExperiment(raw);
      } catch (e) {
        throw new ConfigError(
          `series '${series.label}', k = ${point.k}`,
          (e as Error).message.split('\n')[0] ?? String(e),
          {
            hint: 'fix the study file (settings are dotted paths of the experiment schema)',
            cause: e,
          },
        );
      }
      config = {
        ...config,
        name: `${study.name}-${series.label}-k${point.k}`.replace(/[^\w.-]/g, '_'),
        optim: { ...config.optim, epochs: Math.max(1, Math.round(config.optim.epochs * scale)) },
        data: {
          ...config.data,
          trainSubset:
            config.data.trainSubset > 0 && config.data.trainSubset * scale < 60000
              ? Math.round(config.data.trainSubset * scale)
              : 0,
        },
        tracking: { ...config.tracking, dir: options.runsDir },
      };
      runs.push({ id: configHash(config), series: series.label, k: point.k, config });
    }
  }
  return runs;
}
