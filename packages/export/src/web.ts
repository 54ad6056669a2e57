import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { build } from 'esbuild';
import { writeFileAtomic, type TrainingDataset } from '@contrast/core';
import { nativeImageEncoders } from '@contrast/backend';
import { splitBatch } from '@contrast/data';
import type { ContrastEncoder } from '@contrast/models';
import { modelArtifacts, weightBytes } from './layers-model.js';
import { l2NormalizeRows } from './pixels.js';
import type { EncoderSidecar } from './sidecar.js';

/** The package folder (this file sits in src/ under vitest and in dist/ when built). */
const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));

const b64 = (bytes: Uint8Array) =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

/**
 * The page's script: src/web/page.ts with tfjs from the project's own
 * dependencies, bundled by esbuild into one IIFE (a classic script runs from
 * file://, where module scripts are refused), minified, no CDN.
 */
export async function bundlePage(): Promise<Uint8Array> {
  const out = await build({
    entryPoints: [join(PACKAGE_DIR, 'src', 'web', 'page.ts')],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    write: false,
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  return out.outputFiles[0]!.contents;
}

/**
 * The gallery: the first `size` test images with their ids, labels, PNG
 * thumbnails and L2-normalised pooled features (the encoder in eval mode, as kNN
 * evaluation computes them).
 */
export async function buildGallery(
  dataset: TrainingDataset,
  encoder: ContrastEncoder,
  size: number,
) {
  const split = dataset.test;
  const n = Math.min(size, split.n);
  const { height: h, width: w, channels: c } = dataset;
  const png = nativeImageEncoders().png;
  const thumbs: string[] = [];
  for (let i = 0; i < n; i++) {
    const img = tf.tensor3d(
      split.images.subarray(i * h * w * c, (i + 1) * h * w * c),
      [h, w, c],
      'int32',
    );
    thumbs.push(`data:image/png;base64,${b64(await png(img))}`);
    img.dispose();
  }
  const dim = encoder.featureDim;
  const embeddings = new Float32Array(n * dim);
  for (let s = 0; s < n; s += 250) {
    const e = Math.min(n, s + 250);
    const f = tf.tidy(() => encoder.features(splitBatch(dataset, split, s, e), false));
    embeddings.set(f.dataSync(), s * dim);
    f.dispose();
  }
  l2NormalizeRows(embeddings, dim);
  const names = (dataset as { classes?: string[] }).classes;
  const labels = Array.from(split.labels.subarray(0, n), (l) => names?.[l] ?? l);
  const ids = Array.from({ length: n }, (_, i) => `${dataset.name}:test:${i}`);
  return { ids, labels, thumbs, dim, embeddings };
}

const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Contrast: nearest neighbours</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  #about { color: #555; margin-bottom: 12px; }
  #drop { border: 2px dashed #aaa; border-radius: 8px; padding: 16px; display: flex; gap: 16px; align-items: center; }
  #drop.over { border-color: #2a7; background: #f3fbf6; }
  #status { margin: 8px 0 16px; color: #333; }
  #status[data-state=error] { color: #b00; }
  .query { display: flex; gap: 10px; align-items: flex-start; margin-bottom: 14px; padding-bottom: 10px; border-bottom: 1px solid #eee; }
  figure { margin: 0; text-align: center; font-size: 12px; }
  figure img { width: 84px; height: 84px; image-rendering: pixelated; object-fit: contain; background: #000; display: block; }
  .query-image img { outline: 3px solid #2a7; }
  .query-image { margin-right: 12px; }
</style>
</head>
<body>
<h1>Nearest neighbours in the encoder's feature space</h1>
<div id="about">loading...</div>
<div id="drop">
  <label>Choose images <input id="file" type="file" accept="image/*" multiple></label>
  <span>or drop them here</span>
  <label>k <input id="k" type="number" min="1" max="50" value="5" style="width: 4em"></label>
</div>
<div id="status" data-state="loading">loading the model...</div>
<div id="results"></div>
<script src="gallery.js"></script>
<script src="model.js"></script>
<script src="app.js"></script>
</body>
</html>
`;

/**
 * Writes the self-contained nearest-neighbour page into `dir`: index.html,
 * app.js (the bundled page with tfjs), gallery.js (thumbnails, labels and
 * features of the gallery, the sidecar), model.js (the tfjs model inlined for
 * file://; over http the page loads tfjs/model.json, which the caller writes).
 * Returns the path of index.html.
 */
export async function writeWebPage(
  dir: string,
  opts: {
    model: tf.LayersModel;
    sidecar: EncoderSidecar;
    dataset: TrainingDataset;
    encoder: ContrastEncoder;
    size: number;
  },
): Promise<string> {
  const g = await buildGallery(opts.dataset, opts.encoder, opts.size);
  const gallery = {
    encoder: opts.sidecar,
    ids: g.ids,
    labels: g.labels,
    thumbs: g.thumbs,
    dim: g.dim,
    embeddings: b64(new Uint8Array(g.embeddings.buffer)),
  };
  writeFileAtomic(
    join(dir, 'gallery.js'),
    `window.CONTRAST_GALLERY = ${JSON.stringify(gallery)};\n`,
  );
  const a = await modelArtifacts(opts.model);
  const inline = {
    modelTopology: a.modelTopology,
    weightSpecs: a.weightSpecs,
    weightData: b64(weightBytes(a)),
  };
  writeFileAtomic(join(dir, 'model.js'), `window.CONTRAST_MODEL = ${JSON.stringify(inline)};\n`);
  writeFileAtomic(join(dir, 'app.js'), await bundlePage());
  const index = join(dir, 'index.html');
  writeFileAtomic(index, PAGE_HTML);
  return index;
}
