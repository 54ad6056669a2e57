import { mkdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, writeFileAtomic, type Catalog, type TrainingDataset } from '@contrast/core';
import type { ContrastEncoder } from '@contrast/models';
import { openRun } from '@contrast/trainer';
import { buildLayersModel, saveLayersModel } from './layers-model.js';
import { logExportedModel, type LoggedExport } from './mlflow-model.js';
import { encodeNpz } from './npy.js';
import { backboneEncoder, buildSidecar, type EncoderSidecar } from './sidecar.js';
import { writeTorchExport } from './torch-export.js';
import { writeWebPage } from './web.js';

export const EXPORT_FORMATS = ['tfjs', 'torch', 'npz', 'web'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportOptions {
  /** Default: tfjs, torch and npz. */
  formats?: readonly ExportFormat[];
  /** Output folder (default `<run>/export`). */
  out?: string;
  /** Also export the projection head (tfjs: a second output; torch: `fc`; npz: `head/...`). */
  head?: boolean;
  /** web: how many test-split images the page's gallery holds (default 1000). */
  gallery?: number;
  log?: (line: string) => void;
}

export interface ExportResult {
  dir: string;
  sidecar: EncoderSidecar;
  /** Written files by role, relative to `dir`. */
  files: Record<string, string>;
  /** The MLflow logged model, when the run is tracked and the server took it. */
  mlflowModel?: LoggedExport;
}

/** A trained encoder ready to export: what every format needs. */
export interface ExportSource {
  sidecar: EncoderSidecar;
  encoder: ContrastEncoder;
  dataset: TrainingDataset;
  /** The variables to export, Contrast names (the head's only with `head`). */
  named: Map<string, tf.Tensor>;
}

/** Parses `tfjs,torch` into formats; refuses unknown names with the list. */
export function parseFormats(text: string): ExportFormat[] {
  const names = text
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!EXPORT_FORMATS.includes(n as ExportFormat)) {
      throw new ConfigError('--format', `unknown format '${n}'`, {
        hint: `use one or more of ${EXPORT_FORMATS.join(', ')}, comma-separated`,
      });
    }
  }
  if (names.length === 0) throw new ConfigError('--format', 'no format given');
  return names as ExportFormat[];
}

/** The variables to export: the backbone's, plus the head's when asked. */
export function exportedVariables(encoder: ContrastEncoder, head: boolean): Map<string, tf.Tensor> {
  return new Map([...encoder.namedVariables()].filter(([k]) => head || !k.startsWith('head/')));
}

/** Host copies of tensors (name, shape, float32 data), in order. */
export function onHost(named: ReadonlyMap<string, tf.Tensor>) {
  return [...named].map(
    ([k, v]) => [k, { shape: [...v.shape], data: v.dataSync() as Float32Array }] as const,
  );
}

/** Writes the formats of `source` into `dir`; returns the files by role. */
export async function writeExport(
  dir: string,
  source: ExportSource,
  formats: readonly ExportFormat[],
  options: { gallery?: number; log?: (line: string) => void } = {},
): Promise<Record<string, string>> {
  const { sidecar, encoder, named, dataset } = source;
  const log = options.log ?? (() => {});
  const files: Record<string, string> = {};
  const rel = (p: string) => relative(dir, p);
  mkdirSync(dir, { recursive: true });
  const input = sidecar.input;
  if (formats.includes('tfjs') || formats.includes('web')) {
    const arch = encoder.describe();
    const archOut = { backbone: arch.backbone, head: sidecar.projection.included ? arch.head : [] };
    const model = buildLayersModel(archOut, named, input);
    try {
      const saved = await saveLayersModel(model, join(dir, 'tfjs'), { contrast: sidecar.format });
      files.tfjs = rel(saved.modelJson);
      log(`tfjs: ${files.tfjs} (${(saved.bytes / 2 ** 20).toFixed(1)} MB of weights)`);
      if (formats.includes('web')) {
        const page = await writeWebPage(dir, {
          model,
          sidecar,
          dataset,
          encoder,
          size: options.gallery ?? 1000,
        });
        files.web = rel(page);
        log(`web: ${files.web}`);
      }
    } finally {
      model.dispose();
    }
  }
  // one host copy of the weights for the formats written from the host
  const host = formats.includes('torch') || formats.includes('npz') ? onHost(named) : [];
  if (formats.includes('torch')) {
    const t = writeTorchExport(join(dir, 'torch'), sidecar, host);
    files.torch = rel(t.safetensors);
    files.torch_loader = rel(t.loader);
    log(`torch: ${files.torch} (${t.tensors.length} tensors), ${files.torch_loader}`);
  }
  if (formats.includes('npz')) {
    const arrays = new Map(host);
    files.npz = 'encoder.npz';
    writeFileAtomic(join(dir, files.npz), encodeNpz(arrays));
    log(`npz: ${files.npz} (${arrays.size} arrays, Contrast names and layouts)`);
  }
  return files;
}

/**
 * `contrast export <run>`: rebuilds the run's encoder (openRun), then writes
 * `encoder.json` (the sidecar) and each format into the output folder:
 * `tfjs/model.json` + `weights.bin` (tf.loadLayersModel), `torch/model.safetensors`
 * + `load.py` (torchvision names, strict load), `encoder.npz` (Contrast names and
 * layouts: conv HWIO, linear [in, out]), `index.html` + scripts (web). A run
 * tracked in MLflow also gets the folder as a logged model linked to it
 * (`logExportedModel`).
 * @throws ConfigError for an unknown format or an encoder that cannot be exported.
 */
export async function exportRun(
  target: string,
  catalog: Catalog,
  options: ExportOptions = {},
): Promise<ExportResult> {
  const opened = await openRun(target, catalog);
  try {
    const encoder = backboneEncoder(opened.session.encoder);
    // a backbone without a layer-by-layer description (a ViT) has no tf.layers model
    const formats =
      options.formats ?? (encoder.describable ? ['tfjs', 'torch', 'npz'] : ['torch', 'npz']);
    const head = options.head ?? false;
    const dataset = opened.session.dataset;
    const sidecar = buildSidecar({ ...opened, dataset, encoder, includeHead: head });
    const dir = resolve(options.out ?? join(opened.runPath, 'export'));
    const named = exportedVariables(encoder, head);
    const files = await writeExport(dir, { sidecar, encoder, dataset, named }, formats, options);
    sidecar.files = files;
    writeFileAtomic(join(dir, 'encoder.json'), `${JSON.stringify(sidecar, null, 2)}\n`);
    const model = await logExportedModel(opened.runPath, dir, sidecar, options.log ?? (() => {}));
    return { dir, sidecar, files, ...(model ? { mlflowModel: model } : {}) };
  } finally {
    opened.session.dispose();
  }
}
