import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { FASHION_MNIST_FILES, fashionMnistDir, loadFashionMnist } from './fashion-mnist.js';
import { parseIdx, readIdx } from './idx.js';

const dir = fashionMnistDir();

function idx(dims: number[], payload: number[]): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt8(0x08, 2);
  head.writeUInt8(dims.length, 3);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(payload)]);
}

describe('IDX reader', () => {
  it('parses a hand-made file, gzipped or not', () => {
    const raw = idx([2, 2], [1, 2, 3, 4]);
    const parsed = parseIdx(raw, 'x');
    expect(parsed.dims).toEqual([2, 2]);
    expect(Array.from(parsed.data)).toEqual([1, 2, 3, 4]);
    expect(parseIdx(gzipSync(raw), 'x').dims).toEqual([2, 2]);
  });

  it('refuses bad magic, wrong lengths and broken gzip with the file name', () => {
    expect(() => parseIdx(Buffer.from([1, 2, 3, 4, 5]), 'a.idx')).toThrow(/a.idx: bad IDX magic/);
    expect(() => parseIdx(idx([3], [1, 2]), 'b.idx')).toThrow(/payload is 2 bytes .* need 3/);
    expect(() => parseIdx(idx([2], [1, 2, 3]), 'c.idx')).toThrow(/payload is 3 bytes/);
    const gz = gzipSync(idx([4], [1, 2, 3, 4]));
    expect(() => parseIdx(gz.subarray(0, gz.length - 6), 'd.gz')).toThrow(
      expect.objectContaining({ code: 'CONTRAST_DATASET', file: 'd.gz' }),
    );
  });

  it('reads the real Fashion-MNIST files with the official split', () => {
    const ds = loadFashionMnist(dir);
    expect([ds.train.n, ds.test.n]).toEqual([60000, 10000]);
    expect(ds.train.images.length).toBe(60000 * 784);
    const counts = new Array(10).fill(0);
    ds.test.labels.forEach((l) => counts[l]++);
    expect(counts).toEqual(new Array(10).fill(1000)); // the official test set is balanced
    const mean = ds.train.images.reduce((s, v) => s + v, 0) / ds.train.images.length / 255;
    expect(mean).toBeCloseTo(ds.mean[0]!, 2);
  });

  it('detects a truncated copy of a real file', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'contrast-idx-'));
    const raw = gunzipSync(readFileSync(join(dir, FASHION_MNIST_FILES.testImages)));
    writeFileSync(join(tmp, 't.idx'), raw.subarray(0, raw.length - 784));
    expect(() => readIdx(join(tmp, 't.idx'))).toThrow(/payload is 7839216 bytes .* need 7840000/);
  });

  it('says how to get the dataset when it is missing', () => {
    expect(() => loadFashionMnist('/nonexistent/fmnist')).toThrow(
      expect.objectContaining({
        code: 'CONTRAST_DATASET',
        message: expect.stringMatching(
          /nonexistent.*apt-get install -y dataset-fashion-mnist.*CONTRAST_FASHION_MNIST/s,
        ),
      }),
    );
  });
});
