import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DatasetError } from '@contrast/core';
import { loadCifar10, loadCifar100, loadStl10 } from './binary-datasets.js';

/** Files written in the official binary layouts, with pixel values that encode their position. */
const px = 1024;
const cifarPixel = (r: number, c: number, p: number) => (r * 7 + c * 50 + p) % 256;
function cifarRecords(count: number, labelBytes: (r: number) => number[], offset = 0): Buffer {
  const out: number[] = [];
  for (let r = offset; r < offset + count; r++) {
    out.push(...labelBytes(r));
    for (let c = 0; c < 3; c++) for (let p = 0; p < px; p++) out.push(cifarPixel(r, c, p));
  }
  return Buffer.from(out);
}

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'contrast-ds-'));
}

function datasetError(f: () => unknown): DatasetError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DatasetError);
    return e as DatasetError;
  }
  throw new Error('expected a DatasetError');
}

function writeCifar10(root: string, perBatch = 2): void {
  for (let b = 1; b <= 5; b++) {
    writeFileSync(
      join(root, `data_batch_${b}.bin`),
      cifarRecords(perBatch, (r) => [r % 10], (b - 1) * perBatch),
    );
  }
  writeFileSync(
    join(root, 'test_batch.bin'),
    cifarRecords(3, (r) => [(r + 1) % 10], 100),
  );
}

describe('CIFAR-10 binary', () => {
  it('reads the five training batches and the test batch into NHWC with labels', () => {
    const root = dir();
    writeCifar10(root);
    const ds = loadCifar10(root);
    expect([ds.train.n, ds.test.n, ds.channels, ds.height, ds.numClasses]).toEqual([
      10, 3, 3, 32, 10,
    ]);
    expect(Array.from(ds.train.labels)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const [i, p] of [
      [0, 0],
      [7, 33],
      [9, 1023],
    ] as const) {
      for (let c = 0; c < 3; c++) {
        expect(ds.train.images[i * 3072 + 3 * p + c]).toBe(cifarPixel(i, c, p));
      }
    }
    expect(ds.test.images[2 * 3072 + 3 * 5 + 1]).toBe(cifarPixel(102, 1, 5));
    expect(ds.digest).toMatch(/^[0-9a-f]{16}$/);
  });

  it('refuses a truncated batch, a label out of range and a missing file, naming the file', () => {
    const root = dir();
    writeCifar10(root);
    const full = cifarRecords(2, (r) => [r % 10]);
    writeFileSync(join(root, 'data_batch_3.bin'), full.subarray(0, full.length - 10));
    expect(datasetError(() => loadCifar10(root)).message).toMatch(
      /data_batch_3.bin: size \d+ is not a whole number/,
    );
    writeFileSync(
      join(root, 'data_batch_3.bin'),
      cifarRecords(2, () => [10]),
    );
    expect(datasetError(() => loadCifar10(root)).message).toContain('label 10, outside 0..9');
    const empty = dir();
    const e = datasetError(() => loadCifar10(empty));
    expect(e.message).toContain('data_batch_1.bin: missing');
    expect(e.message).toContain('cifar-10-binary');
  });
});

describe('CIFAR-100 binary', () => {
  it('uses the fine label (second byte) and keeps 100 classes', () => {
    const root = dir();
    writeFileSync(
      join(root, 'train.bin'),
      cifarRecords(4, (r) => [r % 20, 90 + r]),
    );
    writeFileSync(
      join(root, 'test.bin'),
      cifarRecords(2, (r) => [0, r]),
    );
    const ds = loadCifar100(root);
    expect(ds.numClasses).toBe(100);
    expect(Array.from(ds.train.labels)).toEqual([90, 91, 92, 93]);
    expect(ds.train.images[3 * 3072 + 3 * 10 + 2]).toBe(cifarPixel(3, 2, 10));
    writeFileSync(
      join(root, 'test.bin'),
      cifarRecords(1, () => [0, 100]),
    );
    expect(datasetError(() => loadCifar100(root)).message).toContain('label 100');
  });
});

describe('STL-10 binary', () => {
  const side = 96;
  const stlPixel = (i: number, c: number, x: number, y: number) =>
    (i * 31 + c * 80 + x * 3 + y) % 256;
  /** N x 3 x 96 x 96, each plane column-major (x outer, y inner), as the official files. */
  function stlImages(n: number, offset = 0): Buffer {
    const b = Buffer.alloc(n * 3 * side * side);
    for (let i = 0; i < n; i++)
      for (let c = 0; c < 3; c++)
        for (let x = 0; x < side; x++)
          for (let y = 0; y < side; y++)
            b[i * 3 * side * side + c * side * side + x * side + y] = stlPixel(i + offset, c, x, y);
    return b;
  }
  function writeStl(root: string): void {
    writeFileSync(join(root, 'train_X.bin'), stlImages(3));
    writeFileSync(join(root, 'train_y.bin'), Buffer.from([1, 10, 5]));
    writeFileSync(join(root, 'test_X.bin'), stlImages(2, 10));
    writeFileSync(join(root, 'test_y.bin'), Buffer.from([2, 3]));
    writeFileSync(join(root, 'unlabeled_X.bin'), stlImages(4, 20));
  }

  it('transposes the column-major planes to NHWC and shifts labels 1..10 to 0..9', () => {
    const root = dir();
    writeStl(root);
    const ds = loadStl10(root);
    expect([ds.train.n, ds.test.n, ds.height, ds.channels]).toEqual([3, 2, 96, 3]);
    expect(Array.from(ds.train.labels)).toEqual([0, 9, 4]);
    const at = (img: Uint8Array, i: number, x: number, y: number, c: number) =>
      img[i * side * side * 3 + (y * side + x) * 3 + c];
    expect(at(ds.train.images, 1, 5, 70, 2)).toBe(stlPixel(1, 2, 5, 70));
    expect(at(ds.train.images, 2, 95, 0, 0)).toBe(stlPixel(2, 0, 95, 0));
    expect(at(ds.test.images, 1, 17, 3, 1)).toBe(stlPixel(11, 1, 17, 3));
    expect(ds.evalTrain).toBeUndefined();
  });

  it('pre-trains on unlabeled + train, and evaluates on the labeled train split', () => {
    const root = dir();
    writeStl(root);
    const ds = loadStl10(root, { unlabeled: true });
    expect(ds.train.n).toBe(7);
    expect(Array.from(ds.train.labels)).toEqual([255, 255, 255, 255, 0, 9, 4]);
    expect(ds.evalTrain?.n).toBe(3);
    expect(ds.train.images[0]).toBe(stlPixel(20, 0, 0, 0));
  });

  it('refuses mismatched label counts, bad labels and truncated images', () => {
    const root = dir();
    writeStl(root);
    writeFileSync(join(root, 'train_y.bin'), Buffer.from([1, 2]));
    expect(datasetError(() => loadStl10(root)).message).toContain('2 labels for 3 images');
    writeFileSync(join(root, 'train_y.bin'), Buffer.from([1, 0, 2]));
    expect(datasetError(() => loadStl10(root)).message).toContain('label 0 at index 1');
    writeFileSync(join(root, 'train_y.bin'), Buffer.from([1, 2, 3]));
    writeFileSync(join(root, 'test_X.bin'), stlImages(2).subarray(0, 1000));
    expect(datasetError(() => loadStl10(root)).message).toContain('test_X.bin: size 1000');
  });
});
