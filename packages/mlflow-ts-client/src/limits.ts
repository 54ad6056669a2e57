import { MlflowError } from './errors.js';
import type { KeyValue, Metric } from './types.js';

/**
 * Entries per `runs/log-batch` request the server accepts (mlflow/utils/validation.py:
 * MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH, MAX_ENTITIES_PER_BATCH). A request
 * over any of them is refused whole with INVALID_PARAMETER_VALUE.
 */
export const LOG_BATCH_LIMITS = { metrics: 1000, params: 100, tags: 100, total: 1000 } as const;

/**
 * Length limits in characters (MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH,
 * MAX_TAG_VAL_LENGTH). The server refuses a longer key; a longer param or tag
 * value it silently cuts (MLFLOW_TRUNCATE_LONG_VALUES, on by default) or
 * refuses, so the client refuses it before sending (see {@link checkEntries}).
 */
export const MLFLOW_LIMITS = { key: 250, paramValue: 6000, tagValue: 8000 } as const;

/** One log-batch request's worth of entries. */
export interface LogBatchChunk {
  metrics: Metric[];
  params: KeyValue[];
  tags: KeyValue[];
}

/**
 * Splits one batch into requests within {@link LOG_BATCH_LIMITS}: params and
 * tags first (100 each), metrics fill the rest of each request's 1000 entries.
 * Keeps the order within each kind; an empty batch gives no request.
 */
export function chunkLogBatch(batch: {
  metrics?: Metric[];
  params?: KeyValue[];
  tags?: KeyValue[];
}): LogBatchChunk[] {
  const metrics = [...(batch.metrics ?? [])];
  const params = [...(batch.params ?? [])];
  const tags = [...(batch.tags ?? [])];
  const out: LogBatchChunk[] = [];
  while (metrics.length || params.length || tags.length) {
    const p = params.splice(0, LOG_BATCH_LIMITS.params);
    const t = tags.splice(0, LOG_BATCH_LIMITS.tags);
    const room = Math.min(LOG_BATCH_LIMITS.metrics, LOG_BATCH_LIMITS.total - p.length - t.length);
    out.push({ metrics: metrics.splice(0, room), params: p, tags: t });
  }
  return out;
}

const shown = (key: string) => (key.length > 60 ? `${key.slice(0, 60)}...` : key);

/**
 * Refuses, before anything is sent, any entry over the server's length limits,
 * so a batch split into several requests is never half applied and a value is
 * never cut silently. Throws MlflowError `MLFLOW_INVALID_INPUT` with errorCode
 * INVALID_PARAMETER_VALUE naming the key.
 */
export function checkEntries(
  kind: 'metric' | 'param' | 'tag',
  entries: readonly { key: string; value?: unknown }[],
): void {
  const maxValue =
    kind === 'param' ? MLFLOW_LIMITS.paramValue : kind === 'tag' ? MLFLOW_LIMITS.tagValue : 0;
  for (const e of entries) {
    if (e.key.length > MLFLOW_LIMITS.key) {
      throw invalid(
        `${kind} key '${shown(e.key)}' has ${e.key.length} characters; the server allows ${MLFLOW_LIMITS.key}`,
        'use a shorter key',
      );
    }
    if (maxValue && typeof e.value === 'string' && e.value.length > maxValue) {
      throw invalid(
        `${kind} '${shown(e.key)}': value has ${e.value.length} characters; the server allows ${maxValue}`,
        `shorten the value to ${maxValue} characters (or log it as an artifact)`,
      );
    }
  }
}

function invalid(detail: string, hint: string): MlflowError {
  return new MlflowError('MLFLOW_INVALID_INPUT', detail, {
    hint,
    errorCode: 'INVALID_PARAMETER_VALUE',
  });
}
