import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '@contrast/core';
import type { MlflowUploader } from '@contrast/tracking';
import { testedX } from './labels.js';
import { studyPoints } from './report.js';
import { groups, type StudyResult } from './results.js';

/** A series label as part of an MLflow metric key (letters, digits, `_ - . / space`; others `_`). */
export const metricKeyPart = (label: string) => label.replace(/[^\w\-. /]/g, '_');

/** One configuration: its series, x text, x position and kNN accuracy (fraction, mean over seeds). */
interface SummaryPoint {
  series: string;
  xText: string;
  /** Index of the point's x among the study's x values, ascending. */
  index: number;
  knn: number;
}

function summaryPoints(results: readonly StudyResult[]): SummaryPoint[] {
  const { ks } = groups(results);
  return studyPoints(results, (s) => s, testedX(results).label).map((p) => ({
    series: p.series,
    xText: p.xText,
    index: ks.indexOf(p.k),
    knn: p.mean / 100,
  }));
}

/**
 * The study's summary as MLflow metrics of its parent run (records of its
 * metrics.jsonl, `{step, epoch, ...values}`):
 *   best_knn_accuracy            the best configuration (mean over seeds), step 0
 *   best_knn_accuracy/<series>   the best point of each series, step 0
 *   knn_accuracy/<series>        the series along the x axis: step i = the i-th x value, ascending
 * and the tags naming the best configuration and the x value of each step.
 * Empty when there are no results.
 */
export function studySummary(results: readonly StudyResult[]): {
  records: Record<string, number>[];
  tags: Record<string, string>;
} {
  const points = summaryPoints(results);
  if (!points.length) return { records: [], tags: {} };
  const best = points.reduce((a, b) => (b.knn > a.knn ? b : a));
  const first: Record<string, number> = { step: 0, epoch: 0, best_knn_accuracy: best.knn };
  const bySeries = new Map<string, SummaryPoint[]>();
  for (const p of points) bySeries.set(p.series, [...(bySeries.get(p.series) ?? []), p]);
  for (const [s, ps] of bySeries) {
    first[`best_knn_accuracy/${metricKeyPart(s)}`] = Math.max(...ps.map((p) => p.knn));
  }
  const steps = new Map<number, Record<string, number>>([[0, first]]);
  for (const p of points) {
    const rec = steps.get(p.index) ?? { step: p.index, epoch: 0 };
    rec[`knn_accuracy/${metricKeyPart(p.series)}`] = p.knn;
    steps.set(p.index, rec);
  }
  const xs = [...new Map(points.map((p) => [p.index, p.xText]))].sort((a, b) => a[0] - b[0]);
  return {
    records: [...steps.values()].sort((a, b) => a.step! - b.step!),
    tags: {
      'contrast.study.best': `${best.series}, x = ${best.xText}`,
      'contrast.study.x_steps': xs.map(([i, x]) => `${i}: ${x}`).join(', '),
    },
  };
}

/**
 * Writes the summary into the parent run's folder (metrics.jsonl, rewritten
 * whole) and queues it for upload; unchanged records are not sent again.
 */
export function recordStudySummary(parent: MlflowUploader, results: readonly StudyResult[]): void {
  const { records, tags } = studySummary(results);
  if (!records.length) return;
  const time = Date.now() / 1000;
  const path = join(parent.dir, 'metrics.jsonl');
  const text = `${records.map((r) => JSON.stringify({ ...r, time })).join('\n')}\n`;
  const strip = (t: string) => t.replace(/,"time":[\d.e+-]+/g, '');
  const old = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  if (old === undefined || strip(old) !== strip(text) || !parent.state.metricsFile) {
    writeFileAtomic(path, text);
    parent.restartMetrics('metrics.jsonl');
  }
  parent.addTags(tags);
}
