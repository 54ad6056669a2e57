import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { DatasetError } from '@contrast/core';
import { nativeImageDecoder, nativeImageEncoders } from '@contrast/backend';
import { loadImageFolder } from '@contrast/data';

/** Image folders with real JPEG and PNG files, decoded by TensorFlow's native decoders. */
describe('image folders', () => {
  let root: string;
  const decode = nativeImageDecoder();

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-folder-'));
    const enc = nativeImageEncoders();
    const solid = (rgb: number[], h: number, w: number) =>
      tf.tidy(() => tf.cast(tf.mul(tf.ones([h, w, 3]), tf.tensor1d(rgb)), 'int32')) as tf.Tensor3D;
    const write = async (
      split: string,
      cls: string,
      file: string,
      rgb: number[],
      h = 20,
      w = 30,
    ) => {
      mkdirSync(join(root, split, cls), { recursive: true });
      const img = solid(rgb, h, w);
      const bytes = file.endsWith('.png') ? await enc.png(img) : await enc.jpeg(img);
      img.dispose();
      writeFileSync(join(root, split, cls, file), bytes);
    };
    await write('train', 'cat', 'a.png', [250, 10, 10]);
    await write('train', 'cat', 'b.jpg', [240, 20, 20], 40, 12);
    await write('train', 'dog', 'c.png', [10, 10, 250]);
    await write('test', 'dog', 'd.jpg', [20, 20, 240]);
    writeFileSync(join(root, 'train', 'dog', 'broken.jpg'), Buffer.from('not a jpeg at all'));
    writeFileSync(join(root, 'train', 'dog', 'notes.txt'), 'ignored: not an image');
  });

  it('reads class folders, decodes JPEG and PNG, resizes, and skips an unreadable file with a count', () => {
    const ds = loadImageFolder(root, { decode, size: 8 });
    expect(ds.classes).toEqual(['cat', 'dog']);
    expect([ds.train.n, ds.test.n, ds.height, ds.channels, ds.numClasses]).toEqual([3, 1, 8, 3, 2]);
    expect(Array.from(ds.train.labels)).toEqual([0, 0, 1]);
    expect(ds.skipped).toEqual([join(root, 'train', 'dog', 'broken.jpg')]);
    const pixel = (i: number) =>
      Array.from(ds.train.images.subarray(i * 192 + 27 * 3, i * 192 + 27 * 3 + 3));
    expect(pixel(0)).toEqual([250, 10, 10]); // PNG is lossless
    pixel(1).forEach((v, c) => expect(Math.abs(v - [240, 20, 20][c]!)).toBeLessThan(8)); // JPEG, resized from 40x12
    expect(ds.mean[0]).toBeGreaterThan(ds.mean[1]!); // statistics of the training split
  });

  it('strict refuses the unreadable file by name; a bad layout is refused with the fix', () => {
    let e: unknown;
    try {
      loadImageFolder(root, { decode, size: 8, strict: true });
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(DatasetError);
    expect((e as DatasetError).message).toContain('broken.jpg');
    expect(() => loadImageFolder(join(root, 'train'), { decode, size: 8 })).toThrow(
      /train\/ and test\//,
    );
  });
});
