import { describe, expect, it } from 'vitest';
import type { StudyResult } from './results.js';
import { studySummary } from './summary.js';

/** Fields the summary does not read. */
const unused = { finalLoss: 1, imgPerSec: 1, wallSeconds: 1, steps: 1, epochs: 1, runPath: '' };
const result = (series: string, k: number, seed: number, knn: number): StudyResult => ({
  ...unused,
  ...{ id: `${series}-${k}-${seed}`, series, k, seed, knn },
});

describe("a study's summary metrics", () => {
  it('best overall and per series (mean over seeds), each series along the x axis', () => {
    const { records, tags } = studySummary([
      result('moco', 64, 0, 0.5),
      result('moco', 64, 1, 0.7), // mean 0.6
      result('moco', 256, 0, 0.65),
      result('end to end (x=1)', 16, 0, 0.55),
      result('end to end (x=1)', 256, 0, 0.4),
    ]);
    // x values ascending: 16 -> step 0, 64 -> step 1, 256 -> step 2
    expect(records).toHaveLength(3);
    expect(records[0]).toMatchObject({
      step: 0,
      best_knn_accuracy: 0.65,
      'best_knn_accuracy/moco': 0.65,
      'best_knn_accuracy/end to end _x_1_': 0.55,
      'knn_accuracy/end to end _x_1_': 0.55,
    });
    expect(records[0]).not.toHaveProperty('knn_accuracy/moco');
    expect(records[1]!.step).toBe(1);
    expect(records[1]!['knn_accuracy/moco']).toBeCloseTo(0.6, 12);
    expect(records[2]).toMatchObject({
      step: 2,
      'knn_accuracy/moco': 0.65,
      'knn_accuracy/end to end _x_1_': 0.4,
    });
    expect(tags).toEqual({
      'contrast.study.best': 'moco, x = 256',
      'contrast.study.x_steps': '0: 16, 1: 64, 2: 256',
    });
  });

  it('no results: nothing to log', () => {
    expect(studySummary([])).toEqual({ records: [], tags: {} });
  });
});
