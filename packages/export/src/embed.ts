import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { SingleBar } from 'cli-progress';
import {
  ConfigError,
  DatasetError,
  ExperimentSchema,
  isStreamed,
  writeFileAtomic,
  type Catalog,
  type ExperimentConfig,
  type ImageSplit,
} from '@contrast/core';
import { nativeImageDecoder } from '@contrast/backend';
import { gatherPixels, listImageFiles, normalize, readImageFiles } from '@contrast/data';
import { openRun } from '@contrast/trainer';
import { encodeNpy } from './npy.js';
import { l2NormalizeRows, toModelInput, type InputSpec } from './pixels.js';
import { backboneEncoder, buildSidecar, type EncoderSidecar } from './sidecar.js';

/** What embeds: a run's encoder or an exported tfjs model, with its input description. */
export interface FeatureSource {
  sidecar: EncoderSidecar;
  /** The run's config (runs only): where dataset targets find their files. */
  config?: ExperimentConfig;
  /** [N, H, W, C] normalised images -> [N, F] pooled features (BN in eval mode). */
  features(x: tf.Tensor4D): tf.Tensor2D;
  dispose(): void;
}

/**
 * A run folder (config.yaml: the encoder rebuilt by openRun) or an export folder
 * (encoder.json + tfjs/model.json, loaded with tf.loadLayersModel).
 * @throws ConfigError when the folder is neither.
 */
export async function openFeatureSource(path: string, catalog: Catalog): Promise<FeatureSource> {
  const dir = resolve(path);
  const sidecarPath = join(dir, 'encoder.json');
  if (existsSync(sidecarPath)) {
    const sidecar = JSON.parse(readFileSync(sidecarPath, 'utf8')) as EncoderSidecar;
    const modelJson = join(dir, sidecar.files.tfjs ?? 'tfjs/model.json');
    if (!existsSync(modelJson)) {
      throw new ConfigError('source', `${dir} has encoder.json but no tfjs model`, {
        hint: `export with --format tfjs (it looked for ${modelJson})`,
      });
    }
    const model = await tf.loadLayersModel(pathToFileURL(modelJson).href);
    return {
      sidecar,
      features: (x) => {
        const out = model.predict(x);
        if (!Array.isArray(out)) return out as tf.Tensor2D;
        tf.dispose(out.slice(1));
        return out[0] as tf.Tensor2D;
      },
      dispose: () => model.dispose(),
    };
  }
  if (!existsSync(join(dir, 'config.yaml'))) {
    throw new ConfigError('source', `${dir} is neither a run folder nor an export`, {
      hint: 'give a run folder (runs/<run>, with config.yaml) or the output of contrast export (with encoder.json)',
    });
  }
  const opened = await openRun(dir, catalog);
  const encoder = backboneEncoder(opened.session.encoder);
  const sidecar = buildSidecar({
    ...opened,
    dataset: opened.session.dataset,
    encoder,
    includeHead: false,
  });
  return {
    sidecar,
    config: opened.config,
    features: (x) => encoder.features(x, false),
    dispose: () => opened.session.dispose(),
  };
}

/** One image to embed: a file path, or a dataset sample. */
interface Item {
  id: string;
  label: string;
}

/** Rows of a target, batch by batch: normalised inputs for `items.slice(start, end)`. */
interface Target {
  items: Item[];
  /** The batch's model input and which of its items it holds (unreadable files drop out, with why). */
  batch(
    start: number,
    end: number,
  ): { x: tf.Tensor4D; kept: number[]; skipped: string[]; reasons: string[] };
}

/** Image files at the top of `dir` (no label) and in its sub-folders (label = folder name). */
function folderItems(dir: string): Item[] {
  const items: Item[] = listImageFiles(dir).map((p) => ({ id: relative(dir, p), label: '' }));
  for (const sub of readdirSync(dir).sort()) {
    if (!statSync(join(dir, sub)).isDirectory()) continue;
    for (const p of listImageFiles(join(dir, sub)))
      items.push({ id: relative(dir, p), label: sub });
  }
  return items;
}

function folderTarget(dir: string, input: InputSpec, strict: boolean): Target {
  if (input.height !== input.width) {
    throw new ConfigError(
      'target',
      `image files need a square input; this encoder takes ${input.height}x${input.width}`,
    );
  }
  const items = folderItems(dir);
  const decode = nativeImageDecoder();
  return {
    items,
    batch: (start, end) => {
      const paths = items.slice(start, end).map((it) => join(dir, it.id));
      const r = readImageFiles(paths, {
        decode,
        size: input.height,
        strict,
        lenient: 'run without --strict',
      });
      const rgb = tf.tensor4d(r.images, [r.n, input.height, input.width, 3], 'int32');
      const x = toModelInput(rgb, input);
      rgb.dispose();
      return { x, kept: r.kept.map((k) => start + k), skipped: r.skipped, reasons: r.reasons };
    },
  };
}

async function datasetTarget(
  spec: string,
  catalog: Catalog,
  source: FeatureSource,
): Promise<Target> {
  const [name, splitName = 'test'] = spec.split(':');
  const data = {
    ...(source.config?.data ?? ExperimentSchema.shape.data.parse({})),
    dataset: name!,
    trainSubset: 0,
  };
  const ds = await catalog.datasets.get(name!)(data);
  const chosen = splitName === 'train' ? ds.train : splitName === 'test' ? ds.test : undefined;
  if (!chosen)
    throw new ConfigError('target', `no split '${splitName}'`, {
      hint: `use ${name}:train or ${name}:test`,
    });
  if (isStreamed(chosen))
    throw new ConfigError('target', `${name}:train is streamed from disk`, {
      hint: 'embed its folder instead (contrast embed <run> <folder>)',
    });
  const split: ImageSplit = chosen;
  const inp = source.sidecar.input;
  if (ds.height !== inp.height || ds.width !== inp.width || ds.channels !== inp.channels) {
    throw new ConfigError(
      'target',
      `${name} has ${ds.height}x${ds.width}x${ds.channels} images; the encoder takes ${inp.height}x${inp.width}x${inp.channels}`,
      {
        hint: "embed a dataset of the encoder's input shape, or an image folder (resized on load)",
      },
    );
  }
  const names = (ds as { classes?: string[] }).classes;
  const items = Array.from({ length: split.n }, (_, i) => ({
    id: `${name}:${splitName}:${i}`,
    label: String(names?.[split.labels[i]!] ?? split.labels[i]),
  }));
  return {
    items,
    batch: (start, end) => {
      const idx = Array.from({ length: end - start }, (_, i) => start + i);
      const x = tf.tidy(() => normalize(gatherPixels(split, idx, ds), inp.mean, inp.std));
      return { x, kept: idx, skipped: [], reasons: [] };
    },
  };
}

export interface EmbedOptions {
  /** Output .npy file; the ids/labels CSV goes beside it (same name, .csv). */
  out: string;
  /** L2-normalise each row (default true). */
  normalize?: boolean;
  batchSize?: number;
  /** Refuse the first unreadable image file instead of skipping it. */
  strict?: boolean;
  progress?: boolean;
}

export interface EmbedResult {
  npy: string;
  csv: string;
  rows: number;
  dim: number;
  /** Unreadable files skipped (as training skips them). */
  skipped: string[];
  seconds: number;
}

/** CSV field quoting (RFC 4180). */
const csvField = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/**
 * `contrast embed <run|export> <folder|dataset[:split]> --out FILE`: the pooled
 * features of every image, in batches, as a float32 .npy [N, F] (rows
 * L2-normalised unless `normalize: false`) and a CSV of `row,id,label` (ids are
 * paths relative to the folder, or `dataset:split:index`). Image files are
 * decoded as the web page decodes them (readImageFiles); unreadable ones are skipped and
 * listed (refused with `strict`).
 * @throws ConfigError for a bad target or a folder without image files;
 * DatasetError for an unreadable file with `strict`, or a folder none of whose image files can be read (nothing is written then).
 */
export async function embed(
  source: FeatureSource,
  target: string,
  catalog: Catalog,
  options: EmbedOptions,
): Promise<EmbedResult> {
  const t0 = performance.now();
  const isFolder = existsSync(target) && statSync(target).isDirectory();
  const t = isFolder
    ? folderTarget(resolve(target), source.sidecar.input, options.strict ?? false)
    : await datasetTarget(target, catalog, source);
  if (t.items.length === 0) {
    throw new ConfigError('target', `no image files in ${target}`, {
      hint: `put .jpg, .jpeg, .png, .bmp or .gif files in it (at its top or in class sub-folders), or embed a dataset split, e.g. fashion-mnist:test`,
    });
  }
  const bs = options.batchSize ?? 256;
  const bar = options.progress
    ? new SingleBar({
        format: 'embed [{bar}] {value}/{total} images | {speed} img/s | ETA {eta_formatted}',
        stream: process.stderr,
        noTTYOutput: true,
        notTTYSchedule: 5000,
        etaBuffer: 20,
      })
    : undefined;
  bar?.start(t.items.length, 0, { speed: '-' });
  const chunks: Float32Array[] = [];
  const kept: number[] = [];
  const skipped: string[] = [];
  let firstReason = '';
  let dim = 0;
  for (let s = 0; s < t.items.length; s += bs) {
    const e = Math.min(t.items.length, s + bs);
    const b = t.batch(s, e);
    if (b.kept.length > 0) {
      const f = source.features(b.x);
      dim = f.shape[1];
      chunks.push(Float32Array.from(f.dataSync()));
      f.dispose();
    }
    b.x.dispose();
    kept.push(...b.kept);
    skipped.push(...b.skipped);
    firstReason ||= b.reasons[0] ?? '';
    bar?.update(e, { speed: (e / ((performance.now() - t0) / 1000)).toFixed(0) });
  }
  bar?.stop();
  if (kept.length === 0) {
    throw new DatasetError(
      target,
      `none of its ${skipped.length} image files can be read (the first: ${skipped[0]}: ${firstReason}); nothing was written`,
      {
        hint: 'replace or convert them to JPEG, PNG, BMP or GIF, or give the folder of your images',
      },
    );
  }
  const rows = new Float32Array(kept.length * dim);
  let at = 0;
  for (const c of chunks) {
    rows.set(c, at);
    at += c.length;
  }
  if (options.normalize ?? true) l2NormalizeRows(rows, dim);
  const npy = resolve(options.out);
  const csv = join(dirname(npy), `${basename(npy).replace(/\.npy$/, '')}.csv`);
  mkdirSync(dirname(npy), { recursive: true });
  writeFileAtomic(npy, encodeNpy(rows, [kept.length, dim]));
  const lines = kept.map(
    (k, r) => `${r},${csvField(t.items[k]!.id)},${csvField(t.items[k]!.label)}`,
  );
  writeFileAtomic(csv, `row,id,label\n${lines.join('\n')}\n`);
  return { npy, csv, rows: kept.length, dim, skipped, seconds: (performance.now() - t0) / 1000 };
}
