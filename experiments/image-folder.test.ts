import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  DatasetError,
  isStreamed,
  parseExperiment,
  type ExperimentInput,
} from '@contrast/core';
import { builtinPlugins } from '@contrast/cli';
import { encodeImage, openImageFolder, syntheticImage, writeSyntheticFolder } from '@contrast/data';
import { createCatalog, runExperiment } from '@contrast/trainer';
import { cli } from './cli.js';

/** Image folders of real JPEG and PNG files, streamed from disk and decoded by libvips. */
describe('image folders', () => {
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-folder-'));
    // the train/ + test/ layout with class folders: PNG cats, JPEG dogs, a broken file in each split
    for (const split of ['train', 'test']) {
      for (const [cls, fmt, base] of [
        ['cat', 'png', 0],
        ['dog', 'jpeg', 100],
      ] as const) {
        mkdirSync(join(root, 'layout', split, cls), { recursive: true });
        for (let i = 0; i < (split === 'train' ? 6 : 3); i++) {
          const bytes = await encodeImage(syntheticImage(base + i, 20), 20, fmt);
          writeFileSync(
            join(root, 'layout', split, cls, `${i}.${fmt === 'png' ? 'png' : 'jpg'}`),
            bytes,
          );
        }
      }
      writeFileSync(join(root, 'layout', split, 'dog', 'broken.jpg'), 'not a jpeg at all');
    }
    writeFileSync(join(root, 'layout', 'train', 'dog', 'notes.txt'), 'ignored: not an image');
    // unlabelled pictures in nested folders, and labelled evaluation images (a CSV and a folder)
    await writeSyntheticFolder(join(root, 'photos'), { count: 160, size: 24, perFolder: 50 });
    const evalTrain = await writeSyntheticFolder(join(root, 'labelled', 'train'), {
      count: 40,
      size: 24,
      classes: 4,
    });
    writeFileSync(
      join(root, 'labelled', 'bank.csv'),
      `path,label\n${evalTrain.map((p) => `train/${p},${p.split('/')[0]}`).join('\n')}\n`,
    );
    await writeSyntheticFolder(join(root, 'labelled', 'test'), { count: 20, size: 24, classes: 4 });
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('train/ + test/ layout: class labels, labelled bank and test split, unreadable files skipped and counted', async () => {
    const ds = await openImageFolder({ root: join(root, 'layout'), size: 8 });
    expect(ds.classes).toEqual(['cat', 'dog']);
    expect(isStreamed(ds.train)).toBe(true);
    expect([ds.train.n, ds.test.n, ds.height, ds.channels, ds.numClasses]).toEqual([
      13, 6, 8, 3, 2,
    ]);
    expect(Array.from(ds.train.labels)).toEqual([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
    expect(ds.evalTrain!.n).toBe(12); // the labelled training images, the broken one left out
    expect(Array.from(ds.test.labels)).toEqual([0, 0, 0, 1, 1, 1]);
    expect(ds.skipped.sort()).toEqual(
      [
        join(root, 'layout', 'test', 'dog', 'broken.jpg'),
        join(root, 'layout', 'train', 'dog', 'broken.jpg'),
      ].sort(),
    );
    expect(ds.unlabelled).toBeUndefined();
    expect(ds.mean[0]).toBeGreaterThan(0);
    const e = await openImageFolder({ root: join(root, 'layout'), size: 8, strict: true }).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(DatasetError);
    expect((e as Error).message).toContain('broken.jpg');
    await expect(
      openImageFolder({ root: join(root, 'layout'), size: 8, holdout: 5 }),
    ).rejects.toThrow(ConfigError);
    await expect(openImageFolder({ root: join(root, 'nothing'), size: 8 })).rejects.toThrow(
      /is not a folder/,
    );
  });

  it('a folder whose every image is unreadable is refused as such, not blamed on data.holdout', async () => {
    const dir = join(root, 'all-broken');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'a.jpg'), 'not a jpeg');
    writeFileSync(join(dir, 'b.png'), 'not a png');
    // the default holdout (1000) and none: both are the same unreadable folder
    for (const holdout of [undefined, 0]) {
      const e = await openImageFolder({
        root: dir,
        size: 8,
        ...(holdout === undefined ? {} : { holdout }),
      }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(DatasetError);
      expect((e as Error).message).toMatch(
        /all-broken: none of its 2 image files can be read \(the first: .*all-broken\/a\.jpg: .+\)\n {2}fix: replace or convert them/,
      );
    }
    // two readable images still meet the holdout's own error
    const fine = join(root, 'two-fine');
    await writeSyntheticFolder(fine, { count: 2, size: 16 });
    await expect(openImageFolder({ root: fine, size: 8 })).rejects.toThrow(
      /data.holdout.*holds out all 2 images/,
    );
  });

  const experiment = (data: Record<string, unknown>, extra: Partial<ExperimentInput> = {}) =>
    parseExperiment({
      name: 'folder-tiny',
      data: { dataset: 'image-folder', root: join(root, 'photos'), imageSize: 16, ...data },
      model: { encoder: 'convnet', width: 0.25, dim: 16 },
      strategy: { name: 'momentum-queue', queueSize: 64 },
      optim: { batchSize: 16, epochs: 1 },
      eval: { knn: { k: 5 }, alignUniform: 16 },
      tracking: { dir: join(root, 'runs') },
      ...extra,
    });

  it('trains on an unlabelled folder: kNN skipped with a note, alignment / uniformity on held-out images', async () => {
    const lines: string[] = [];
    const out = await runExperiment(experiment({ holdout: 32 }), createCatalog(builtinPlugins()), {
      progress: false,
      log: (l) => lines.push(l),
    });
    expect(out.result).toMatchObject({ status: 'finished', steps: 8, skippedFiles: 0 }); // 128 / 16
    expect(Number.isNaN(out.result.knn.trained)).toBe(true);
    expect(lines.join('\n')).toContain(
      'kNN (and its baselines) skipped: the training images are unlabelled',
    );
    expect(lines.join('\n')).toMatch(/160 images indexed in [\d.]+ s; training on 128, streamed/);
    expect(Number.isFinite(out.result.alignment)).toBe(true);
    expect(Number.isFinite(out.result.uniformity)).toBe(true);
    const summary = JSON.parse(readFileSync(join(out.runPath, 'summary.json'), 'utf8'));
    expect(summary.skipped_files).toBe(0);
    const r = await cli(['eval', 'knn', out.runPath]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('kNN skipped: the training images are unlabelled');
    expect(existsSync(join(out.runPath, 'eval', 'knn.json'))).toBe(false);
  });

  it('a memory bank trains on a streamed folder; kNN and the probe use the labelled CSV bank and test folder', async () => {
    const config = experiment(
      { eval: { train: join(root, 'labelled', 'bank.csv'), test: join(root, 'labelled', 'test') } },
      { strategy: { name: 'memory-bank', negatives: 64 } },
    );
    const out = await runExperiment(config, createCatalog(builtinPlugins()), {
      progress: false,
      log: () => {},
    });
    expect(out.result.steps).toBe(10); // 160 images, no hold-out (a test split is given)
    expect(out.result.knn.trained).toBeGreaterThanOrEqual(0);
    expect(out.result.knn.rawPixels).toBeGreaterThan(0.5); // 4 classes of their own colours (chance: 0.25)
    const r = await cli(['eval', 'linear', out.runPath, '--epochs', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('linear_top1');
  });
});
