import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { checkHealth, effectiveRank, embeddingHealth, HEALTH_THRESHOLDS } from './health.js';

describe('effective rank (Roy & Vetterli)', () => {
  it('is 1 for one direction, D for D orthogonal directions of equal weight, 2 for two', () => {
    tf.tidy(() => {
      const one = tf.tensor2d([
        [0.6, 0.8, 0],
        [0.6, 0.8, 0],
        [0.6, 0.8, 0],
      ]);
      expect(effectiveRank(one)).toBeCloseTo(1, 5);
      expect(effectiveRank(tf.eye(4) as tf.Tensor2D)).toBeCloseTo(4, 5);
      const two = tf.tensor2d([
        [1, 0, 0],
        [0, 1, 0],
      ]);
      expect(effectiveRank(two)).toBeCloseTo(2, 5);
      // singular values 2 and 1: p = (2/3, 1/3), exp(H) = exp(-(2/3 ln 2/3 + 1/3 ln 1/3))
      const skewed = tf.tensor2d([
        [2, 0],
        [0, 1],
      ]);
      const h = -((2 / 3) * Math.log(2 / 3) + (1 / 3) * Math.log(1 / 3));
      expect(effectiveRank(skewed)).toBeCloseTo(Math.exp(h), 5);
    });
  });
});

describe('embedding health', () => {
  it('tells collapsed embeddings from spread ones', () => {
    tf.tidy(() => {
      const collapsed = tf.tile(tf.tensor2d([[0.6, 0.8, 0, 0]]), [50, 1]) as tf.Tensor2D;
      const c = embeddingHealth(collapsed);
      expect(c.std).toBeCloseTo(0, 6);
      expect(c.effectiveRank).toBeCloseTo(1, 4);
      expect(c.uniformity).toBeCloseTo(0, 5);
      // +-e1, +-e2, +-e3, +-e4: spread over all four dimensions
      const axes = tf.concat([tf.eye(4), tf.neg(tf.eye(4))], 0) as tf.Tensor2D;
      const s = embeddingHealth(axes);
      expect(s.stdRatio).toBeCloseTo(Math.sqrt(4) * Math.sqrt(2 / 8), 5); // std of each dim: sqrt(2/8)
      expect(s.effectiveRank).toBeCloseTo(4, 4);
      expect(s.uniformity).toBeLessThan(-2);
    });
  });

  it('warns with a code for collapse, an early shortcut and a loss at chance; a healthy epoch is silent', () => {
    const healthy = { std: 0.08, stdRatio: 0.9, effectiveRank: 30, uniformity: -3 };
    const base = {
      epoch: 2,
      epochs: 4,
      embeddings: healthy,
      losses: [5],
      accuracies: [0.8],
      predictionsPerStep: 1024,
    };
    expect(checkHealth({ ...base, chanceLoss: Math.log(4097) })).toEqual([]);
    const codes = (e: Parameters<typeof checkHealth>[0]) => checkHealth(e).map((w) => w.code);
    expect(codes({ ...base, embeddings: { ...healthy, stdRatio: 0.05 } })).toEqual([
      'CONTRAST_HEALTH_COLLAPSE',
    ]);
    expect(codes({ ...base, embeddings: { ...healthy, effectiveRank: 1.2 } })).toEqual([
      'CONTRAST_HEALTH_COLLAPSE',
    ]);
    expect(codes({ ...base, accuracies: [1, 0.999, 1] })).toEqual(['CONTRAST_HEALTH_SHORTCUT']);
    expect(codes({ ...base, epoch: 4, accuracies: [1, 1] })).toEqual([]); // late: not "early"
    const chance = Math.log(4097);
    expect(codes({ ...base, losses: [chance], chanceLoss: chance })).toEqual([
      'CONTRAST_HEALTH_STALLED',
    ]);
    expect(codes({ ...base, epoch: 1, losses: [chance], chanceLoss: chance })).toEqual([]);
    expect(HEALTH_THRESHOLDS.chance).toBeLessThan(1);
  });

  it('needs 2,560 pretext predictions before an accuracy at 100% counts as a shortcut', () => {
    const healthy = { std: 0.08, stdRatio: 0.9, effectiveRank: 30, uniformity: -3 };
    const at = (steps: number, accuracy: number, predictionsPerStep = 256) =>
      checkHealth({
        epoch: 1,
        epochs: 1,
        embeddings: healthy,
        losses: [1],
        accuracies: Array<number>(steps).fill(accuracy),
        predictionsPerStep,
      }).map((w) => w.code);
    expect(HEALTH_THRESHOLDS.shortcutMinPredictions).toBe(2560);
    // a 1-step run: one batch solved is noise (and the queue still holds its random init)
    expect(at(1, 1)).toEqual([]);
    expect(at(9, 1)).toEqual([]); // 2,304 predictions: not enough yet
    expect(at(10, 1)).toEqual(['CONTRAST_HEALTH_SHORTCUT']); // 2,560: a real shortcut is caught
    expect(at(3, 1, 1024)).toEqual(['CONTRAST_HEALTH_SHORTCUT']); // evidence counts predictions
    expect(at(200, 0.999)).toEqual(['CONTRAST_HEALTH_SHORTCUT']);
    expect(at(200, 0.98)).toEqual([]); // plenty of evidence, an ordinary accuracy
    const [warning] = checkHealth({
      epoch: 1,
      epochs: 2,
      embeddings: healthy,
      losses: [1],
      accuracies: Array<number>(10).fill(1),
      predictionsPerStep: 256,
    });
    expect(warning!.message).toContain('accuracy 100.0% over 2560 predictions');
  });
});
