import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, DatasetError } from '@contrast/core';
import { indexLabels, openIndex, pathHash, scanFolder, splitIndex } from './image-index.js';

/** The index only lists and stats files: these are not decoded, so any bytes will do. */
const touch = (root: string, rel: string) => {
  mkdirSync(join(root, rel, '..'), { recursive: true });
  writeFileSync(join(root, rel), `bytes of ${rel}`);
};

describe('image index', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'contrast-index-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('lists images recursively in sorted order, leaving out other files and hidden ones', () => {
    const root = join(dir, 'scan');
    for (const f of [
      'b/2.png',
      'b/1.JPG',
      'a/x/3.webp',
      'a/0.jpeg',
      'notes.txt',
      '.hidden/4.jpg',
      'a/.5.jpg',
      'c.gif',
    ]) {
      touch(root, f);
    }
    const { index } = scanFolder(root);
    expect(index.paths).toEqual(['a/0.jpeg', 'a/x/3.webp', 'b/1.JPG', 'b/2.png', 'c.gif']);
    expect(index.sizes).toEqual(index.paths.map((p) => `bytes of ${p}`.length));
    expect(index.mtimes.every((t) => t > 0)).toBe(true);
    expect(() => scanFolder(join(dir, 'nope'))).toThrow(DatasetError);
  });

  it('labels from class folders: sorted class names; an image outside a class folder is refused', () => {
    const root = join(dir, 'classes');
    for (const f of ['dog/a.jpg', 'cat/b.jpg', 'cat/c.jpg', 'emu/deep/d.jpg']) touch(root, f);
    const { index } = scanFolder(root);
    const all = index.paths.map((_, i) => i);
    const { labels, classes } = indexLabels(index, all, 'folders');
    expect(classes).toEqual(['cat', 'dog', 'emu']);
    expect(index.paths).toEqual(['cat/b.jpg', 'cat/c.jpg', 'dog/a.jpg', 'emu/deep/d.jpg']);
    expect(Array.from(labels)).toEqual([0, 0, 1, 2]);
    // a test split takes its bank's classes; a class the bank lacks is refused by name
    expect(Array.from(indexLabels(index, [2], 'folders', ['dog', 'zebra']).labels)).toEqual([0]);
    expect(() => indexLabels(index, [0], 'folders', ['dog'])).toThrow(/class 'cat'/);
    touch(root, 'loose.jpg');
    const again = scanFolder(root).index;
    expect(() =>
      indexLabels(
        again,
        again.paths.map((_, i) => i),
        'folders',
      ),
    ).toThrow(/not inside a class folder/);
  });

  it('labels from a CSV list; a text list has none; missing files are skipped and counted, or refused when strict', () => {
    const root = join(dir, 'lists');
    for (const f of ['imgs/1.jpg', 'imgs/2.jpg', 'imgs/3.png']) touch(root, f);
    writeFileSync(
      join(root, 'train.csv'),
      'path,label\nimgs/1.jpg,zebra\n"imgs/2.jpg",ant\nimgs/gone.jpg,ant\nimgs/3.png,zebra\n',
    );
    const csv = openIndex({ files: join(root, 'train.csv') });
    expect(csv.index.paths).toEqual(['imgs/1.jpg', 'imgs/2.jpg', 'imgs/3.png']); // the list's order
    expect(csv.index.labels).toEqual(['zebra', 'ant', 'zebra']);
    expect(csv.missing).toEqual([join(root, 'imgs/gone.jpg')]);
    const l = indexLabels(csv.index, [0, 1, 2], 'csv');
    expect([l.classes, Array.from(l.labels)]).toEqual([
      ['ant', 'zebra'],
      [1, 0, 1],
    ]);
    expect(() => openIndex({ files: join(root, 'train.csv') }, { strict: true })).toThrow(
      /gone\.jpg/,
    );

    writeFileSync(
      join(root, 'list.txt'),
      `# my images\nimgs/3.png\n\n${join(root, 'imgs/1.jpg')}\n`,
    );
    const txt = openIndex({ files: join(root, 'list.txt') });
    expect([txt.index.paths, txt.index.labels, txt.missing]).toEqual([
      ['imgs/3.png', 'imgs/1.jpg'],
      undefined,
      [],
    ]);

    writeFileSync(join(root, 'bad.csv'), 'file,label\nimgs/1.jpg,a\n');
    expect(() => openIndex({ files: join(root, 'bad.csv') })).toThrow(/no 'path' column/);
  });

  it('is cached beside the data and rebuilt when a folder changes', () => {
    const root = join(dir, 'cached');
    for (let i = 0; i < 5; i++) touch(root, `d${i % 2}/${i}.jpg`);
    const first = openIndex({ root });
    expect(first.cached).toBe(false);
    expect(first.cacheFile).toBe(join(dir, '.cached.contrast-index.json'));
    const second = openIndex({ root });
    expect(second.cached).toBe(true);
    expect(second.index).toEqual(first.index);
    touch(root, 'd1/new.jpg'); // changes d1's mtime
    const past = new Date(Date.now() - 60_000);
    utimesSync(join(root, 'd1'), past, past); // whatever the clock's resolution
    const third = openIndex({ root });
    expect(third.cached).toBe(false);
    expect(third.index.paths).toContain('d1/new.jpg');
    expect(openIndex({ root }).cached).toBe(true);
    rmSync(join(root, 'd0'), { recursive: true });
    expect(openIndex({ root }).index.paths.some((p) => p.startsWith('d0/'))).toBe(false);
    expect(existsSync(join(dir, '.cached.contrast-index.json'))).toBe(true);
  });

  it('holds out the same images whatever the shard, and shards are disjoint and cover the rest', () => {
    const root = join(dir, 'shards');
    for (let i = 0; i < 200; i++) touch(root, `f${i % 7}/${i}.jpg`);
    const { index } = scanFolder(root);
    const shards = [0, 1, 2].map((k) =>
      splitIndex(index, { holdout: 20, shard: { index: k, count: 3 } }),
    );
    const held = shards[0]!.heldOut;
    expect(held).toHaveLength(20);
    for (const s of shards) expect(s.heldOut).toEqual(held);
    // the held-out images are the 20 smallest path hashes
    const byHash = index.paths
      .map((p, i) => [pathHash(p)[0], i] as const)
      .sort((a, b) => a[0] - b[0]);
    expect(held).toEqual(
      byHash
        .slice(0, 20)
        .map(([, i]) => i)
        .sort((a, b) => a - b),
    );
    const seen = shards.flatMap((s) => s.train);
    expect(new Set(seen).size).toBe(seen.length); // no file in two shards
    expect(seen.length + held.length).toBe(200); // every file somewhere
    for (const s of shards) expect(s.train.length).toBeGreaterThan(40); // roughly a third each
    const sub = splitIndex(index, { holdout: 20, subset: 50 });
    expect(sub.train).toHaveLength(50);
    expect(sub.train.every((i) => !held.includes(i))).toBe(true);
    expect(() => splitIndex(index, { holdout: 200 })).toThrow(ConfigError);
  });
});
