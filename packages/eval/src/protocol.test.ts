import { describe, expect, it } from 'vitest';
import { parseExperiment } from '@contrast/core';
import { knnProtocol } from './protocol.js';

const config = (set: { trainSubset?: number; bankSize?: number; testSize?: number; k?: number }) =>
  parseExperiment({
    name: 'p',
    strategy: { name: 'momentum-queue' },
    data: { trainSubset: set.trainSubset ?? 0 },
    model: { encoder: 'convnet' },
    eval: { knn: { bankSize: set.bankSize ?? 0, testSize: set.testSize ?? 0, k: set.k ?? 200 } },
  });

describe('kNN protocol from a resolved config', () => {
  it('names full splits and says subset, with the count, where only part is used', () => {
    expect(knnProtocol(config({}))).toEqual({
      k: 200,
      t: 0.1,
      dataset: 'fashion-mnist',
      features: 'convnet backbone features (pooled, before the head)',
      bank: 'full training split',
      test: 'full test split',
      bankIsSubset: false,
      testIsSubset: false,
    });
    const sub = knnProtocol(config({ trainSubset: 20000, testSize: 2000, k: 20 }));
    expect(sub).toMatchObject({
      k: 20,
      bank: 'first 20,000 training images (a subset)',
      test: 'first 2,000 test images (a subset)',
      bankIsSubset: true,
      testIsSubset: true,
    });
  });

  it('the bank is the first bankSize images of the (possibly cut) training split', () => {
    // knnAccuracy takes the first bankSize images of dataset.train, which trainSubset already cut
    expect(knnProtocol(config({ bankSize: 5000 })).bank).toBe(
      'first 5,000 training images (a subset)',
    );
    expect(knnProtocol(config({ trainSubset: 20000, bankSize: 5000 })).bank).toBe(
      'first 5,000 training images (a subset)',
    );
    expect(knnProtocol(config({ trainSubset: 3000, bankSize: 5000 })).bank).toBe(
      'first 3,000 training images (a subset)',
    );
  });
});
