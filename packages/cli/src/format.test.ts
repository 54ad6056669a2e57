import { describe, expect, it } from 'vitest';
import { describeKnn, shellLine } from './format.js';
import { numberArg } from './options.js';
import { isWarning } from './output.js';

const protocol = {
  dataset: 'cifar10',
  k: 20,
  t: 0.07,
  features: 'pooled backbone' as const,
  bankSize: 50000,
  bankOf: 50000,
  testSize: 10000,
  testOf: 10000,
  trainSubset: 0,
};

describe('the kNN summary says what was measured', () => {
  it('full splits', () => {
    expect(describeKnn(protocol)).toBe(
      'kNN top-1 (k = 20, t = 0.07, pooled backbone features) on cifar10: the full test split (10000 images), bank = the full training split (50000)',
    );
  });
  it('subsets are called subsets', () => {
    expect(describeKnn({ ...protocol, testSize: 500, bankSize: 2048 })).toContain(
      'first 500 of 10000 test images, bank = first 2048 of 50000 training images',
    );
    expect(describeKnn({ ...protocol, bankSize: 1024, bankOf: 2048, trainSubset: 2048 })).toContain(
      'bank = first 1024 training images (data.trainSubset = 2048)',
    );
  });
});

describe('command-line helpers', () => {
  it('number flags: bounds, whole numbers, the advice names an example', () => {
    const epochs = numberArg({ min: 1, integer: true }, '--epochs 100');
    expect(epochs('30')).toBe(30);
    for (const bad of ['-1', '0', '1.5', 'many', '', 'Infinity']) {
      expect(() => epochs(bad), bad).toThrow('use a whole number >= 1, e.g. --epochs 100');
    }
    const lr = numberArg({ min: 0, above: true }, '--lr 30');
    expect(lr('0.5')).toBe(0.5);
    expect(() => lr('0')).toThrow('use a number > 0');
  });

  it('a printed command pastes back into a shell', () => {
    expect(shellLine(['contrast', 'train', '--resume', '/runs/a-1'])).toBe(
      'contrast train --resume /runs/a-1',
    );
    expect(shellLine(['contrast', 'train', 'my exp.yaml', "--set=name=it's"])).toBe(
      `contrast train 'my exp.yaml' '--set=name=it'\\''s'`,
    );
  });

  it('--quiet keeps warnings from library logs, and where the run is tracked', () => {
    expect(isWarning('[mlflow] http://x unreachable; the run spools')).toBe(true);
    expect(isWarning('[tracking] MLflow tracking off (tracking.uri=off)')).toBe(true);
    expect(isWarning('cifar10: skipped 3 unreadable files')).toBe(true);
    expect(isWarning('kNN raw pixels: 81.78%')).toBe(false);
    expect(isWarning('resuming after step 7')).toBe(false);
  });
});
