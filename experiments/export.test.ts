import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { l2Normalize, type ImageSplit } from '@contrast/core';
import { builtinPlugins } from '@contrast/cli';
import { nativeImageEncoders } from '@contrast/backend';
import { FASHION_MNIST_CLASSES, splitBatch } from '@contrast/data';
import {
  decodeNpy,
  decodeSafetensors,
  l2NormalizeRows,
  maxAbsDiff,
  type EncoderSidecar,
} from '@contrast/export';
import { torchName } from '@contrast/models';
import { createCatalog, openRun, type RunOutcome } from '@contrast/trainer';
import { unzipSync } from 'fflate';
import { cli } from './cli.js';
import { trainTinyRun } from './tiny-run.js';

type Split = ImageSplit;

/** A trained run's encoder and data, opened the way export and embed open it. */
async function withRun<T>(
  runPath: string,
  f: (o: Awaited<ReturnType<typeof openRun>>) => T,
): Promise<T> {
  const o = await openRun(runPath, createCatalog(builtinPlugins()));
  try {
    return f(o);
  } finally {
    o.session.dispose();
  }
}

/** L2-normalised eval-mode features of test images start..end, computed in-process. */
function inProcessFeatures(runPath: string, start: number, end: number): Promise<Float32Array> {
  return withRun(runPath, ({ session }) =>
    tf.tidy(() => {
      const x = splitBatch(session.dataset, session.dataset.test, start, end);
      // a copy: the tensor's memory is released when the tidy ends
      return Float32Array.from(l2Normalize(session.encoder.features(x, false)).dataSync());
    }),
  );
}

/** Writes test images as PNG files; returns their paths. */
async function writePngs(split: Split, indices: number[], path: (i: number) => string) {
  const png = nativeImageEncoders().png;
  for (const i of indices) {
    const img = tf.tensor3d(split.images.subarray(i * 784, (i + 1) * 784), [28, 28, 1], 'int32');
    writeFileSync(path(i), await png(img));
    img.dispose();
  }
  return indices.map(path);
}

const maxDiff = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe('export and embed a trained encoder', () => {
  let run: RunOutcome;
  let root: string;
  let test: Split;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'contrast-export-'));
    run = await trainTinyRun(root, 'export-tiny');
    test = await withRun(run.runPath, ({ session }) => session.dataset.test);
  }, 300_000);

  it('export writes encoder.json, a tfjs model equal to the encoder, npz and torch files', async () => {
    const out = join(root, 'export');
    const r = await cli(['export', run.runPath, '--out', out, '--head']);
    expect(r.code, r.stderr).toBe(0);
    const sidecar = JSON.parse(readFileSync(join(out, 'encoder.json'), 'utf8')) as EncoderSidecar;
    expect(sidecar.architecture).toEqual({ encoder: 'convnet', width: 0.5 });
    expect(sidecar.input).toMatchObject({
      height: 28,
      width: 28,
      channels: 1,
      mean: [0.286],
      std: [0.353],
    });
    expect(sidecar.features.dim).toBe(64);
    expect(sidecar.projection).toMatchObject({ head: 'linear', dim: 32, included: true });
    expect(sidecar.training).toMatchObject({
      run: run.runPath,
      steps: 16,
      strategy: 'momentum-queue',
    });
    expect(sidecar.results.knn_top1!.value).toBe(run.result.knn.trained);
    expect(sidecar.results.knn_top1!.protocol).toMatchObject({ k: 200, t: 0.1 });
    expect(sidecar.files).toMatchObject({
      tfjs: 'tfjs/model.json',
      torch: 'torch/model.safetensors',
      npz: 'encoder.npz',
    });

    // tfjs: loaded from disk as a user would, same features as the encoder in-process
    const model = await tf.loadLayersModel(pathToFileURL(join(out, 'tfjs', 'model.json')).href);
    const diffs = await withRun(run.runPath, ({ session }) => {
      const x = splitBatch(session.dataset, session.dataset.test, 0, 256);
      const [f, z] = model.predict(x) as tf.Tensor2D[];
      const ref = session.encoder.features(x, false);
      const refZ = session.encoder.embed(x, false);
      const d = [maxAbsDiff(f!, ref), tf.tidy(() => maxAbsDiff(l2Normalize(z!), refZ))];
      tf.dispose([x, f!, z!, ref, refZ]);
      return d;
    });
    model.dispose();
    expect(diffs[0]).toBeLessThan(1e-5);
    expect(diffs[1]).toBeLessThan(1e-5);

    // npz: every variable under its Contrast name, same values; torch: torchvision names
    const vars = await withRun(
      run.runPath,
      ({ session }) =>
        new Map(
          [...session.encoder.namedVariables()].map(([k, v]) => [k, v.dataSync() as Float32Array]),
        ),
    );
    const npz = unzipSync(readFileSync(join(out, 'encoder.npz')));
    expect(Object.keys(npz).sort()).toEqual([...vars.keys()].map((k) => `${k}.npy`).sort());
    const conv1 = decodeNpy(npz['conv1/w.npy']!);
    expect(conv1.shape).toEqual([3, 3, 1, 16]);
    expect(Array.from(conv1.data as Float32Array)).toEqual(Array.from(vars.get('conv1/w')!));
    const st = decodeSafetensors(readFileSync(join(out, 'torch', 'model.safetensors')));
    const names = st.tensors.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining([...vars.keys()].map((k) => torchName(k))));
    expect(names).toContain('bn3.num_batches_tracked');
    expect(st.tensors.find((t) => t.name === 'conv1.weight')!.shape).toEqual([16, 1, 3, 3]);
    expect(readFileSync(join(out, 'torch', 'load.py'), 'utf8')).toContain('strict=True');
  });

  it('embed: 1,000 image files give the in-process features row for row; a corrupt file is skipped and counted', async () => {
    const folder = join(root, 'images');
    const labels = Array.from(test.labels.subarray(0, 1000));
    for (const l of new Set(labels)) mkdirSync(join(folder, `class${l}`), { recursive: true });
    const name = (i: number) => `class${labels[i]}/img${String(i).padStart(4, '0')}.png`;
    await writePngs(test, [...labels.keys()], (i) => join(folder, name(i)));
    writeFileSync(join(folder, 'class0', 'img0000-broken.png'), 'not a png');
    const out = join(root, 'emb', 'folder.npy');
    const r = await cli(['embed', run.runPath, folder, '--out', out, '--batch', '300', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('skipped 1 unreadable file(s)');
    expect(r.stderr).toContain('img0000-broken.png');
    const { data, shape } = decodeNpy(readFileSync(out));
    expect(shape).toEqual([1000, 64]);
    const csv = readFileSync(join(root, 'emb', 'folder.csv'), 'utf8')
      .trim()
      .split('\n');
    expect(csv[0]).toBe('row,id,label');
    const rows = csv.slice(1).map((l) => l.split(','));
    // rows follow the files (sorted by class folder, then name); each id names its test image
    const order = rows.map(([, id]) => Number(/img(\d+)\.png$/.exec(id!)![1]));
    expect(rows.map(([, id]) => id)).toEqual(order.map(name));
    expect(rows.every(([, , label], i) => label === `class${labels[order[i]!]}`)).toBe(true);
    const ref = await inProcessFeatures(run.runPath, 0, 1000);
    const sorted = new Float32Array(1000 * 64);
    order.forEach((img, row) => sorted.set(ref.subarray(img * 64, (img + 1) * 64), row * 64));
    expect(maxDiff(data as Float32Array, sorted)).toBeLessThan(1e-5);
  });

  it('embed from the export (tfjs model) on dataset:split equals embed from the run', async () => {
    const fromRun = join(root, 'emb', 'run.npy');
    const fromExport = join(root, 'emb', 'export.npy');
    const a = await cli(['embed', run.runPath, 'fashion-mnist:test', '--out', fromRun, '--quiet']);
    const b = await cli([
      'embed',
      join(root, 'export'),
      'fashion-mnist:test',
      '--out',
      fromExport,
      '--quiet',
      '--no-normalize',
    ]);
    expect([a.code, b.code], a.stderr + b.stderr).toEqual([0, 0]);
    const x = decodeNpy(readFileSync(fromRun));
    const y = decodeNpy(readFileSync(fromExport));
    expect(x.shape).toEqual([10_000, 64]);
    const raw = y.data as Float32Array;
    expect(Math.hypot(...raw.subarray(0, 64))).not.toBeCloseTo(1, 2); // --no-normalize
    const ref = await inProcessFeatures(run.runPath, 0, 10_000);
    expect(maxDiff(x.data as Float32Array, ref)).toBeLessThan(1e-5);
    expect(maxDiff(l2NormalizeRows(Float32Array.from(raw), 64), ref)).toBeLessThan(1e-5);
    expect(readFileSync(join(root, 'emb', 'export.csv'), 'utf8').split('\n')[1]).toBe(
      `0,fashion-mnist:test:0,${FASHION_MNIST_CLASSES[test.labels[0]!]}`,
    );
  });

  it('embed refuses with exit 2 and a fix: --strict on a corrupt file, a folder of only unreadable files, an empty folder', async () => {
    const folder = join(root, 'unreadable');
    mkdirSync(join(root, 'empty'), { recursive: true });
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'a.jpg'), 'not a jpeg');
    writeFileSync(join(folder, 'b.png'), 'not a png');
    const out = join(root, 'emb', 'unreadable.npy');
    const strict = await cli(['embed', run.runPath, folder, '--out', out, '--strict']);
    expect(strict.code).toBe(2);
    expect(strict.stderr).toMatch(
      /CONTRAST_DATASET.*a\.jpg: unreadable image.*\n {2}fix: remove or replace the file, or run without --strict to skip unreadable files/s,
    );
    const all = await cli(['embed', run.runPath, folder, '--out', out, '--quiet']);
    expect(all.code).toBe(2);
    expect(all.stderr).toMatch(
      /CONTRAST_DATASET.*none of its 2 image files can be read \(the first: .*a\.jpg: .*\); nothing was written\n {2}fix: /s,
    );
    expect(existsSync(out) || existsSync(join(root, 'emb', 'unreadable.csv'))).toBe(false);
    const empty = await cli(['embed', run.runPath, join(root, 'empty'), '--out', out]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/no image files in .*empty\n {2}fix: put \.jpg, \.jpeg, \.png/);
  });

  it('refuses a folder that is neither a run nor an export, and an unknown format', async () => {
    const r = await cli(['embed', tmpdir(), 'fashion-mnist:test', '--out', join(root, 'x.npy')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('neither a run folder nor an export');
    const f = await cli(['export', run.runPath, '--format', 'onnx']);
    expect(f.code).toBe(2);
    expect(f.stderr).toContain("unknown format 'onnx'");
  });
});
