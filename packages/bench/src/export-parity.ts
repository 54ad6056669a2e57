#!/usr/bin/env node
import 'reflect-metadata';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@contrast/backend';
import { ExperimentSchema, Rng } from '@contrast/core';
import {
  encodeNpy,
  encoderSidecar,
  onHost,
  PARITY_ENCODERS,
  parityImages,
  randomizeBatchNorm,
  writeTorchExport,
} from '@contrast/export';
import { ContrastEncoder } from '@contrast/models';
import { ensureTorchVenvWithSafetensors } from './torch.js';

/**
 * The torch side of export parity: for each supported encoder, the torch
 * export (safetensors + the generated load.py, torchvision's resnet18/50 or the
 * ConvNet module; the heads as nn.Sequential) loaded strictly in the cached torch venv must give Contrast's
 * eval-mode features and projection on 256 Fashion-MNIST test images within 1e-4.
 * BN statistics are randomised (randomizeBatchNorm) so running mean and variance
 * matter. Prints one line per encoder and exits 1 when a check fails.
 */
const npy = (t: tf.Tensor, nchw = false) => {
  const v = nchw ? tf.transpose(t, [0, 3, 1, 2]) : t;
  const out = encodeNpy(v.dataSync() as Float32Array, v.shape);
  if (nchw) v.dispose();
  return out;
};

async function main(): Promise<number> {
  await initBackend('tensorflow');
  const python = ensureTorchVenvWithSafetensors();
  const script = fileURLToPath(new URL('../python/export_parity.py', import.meta.url));
  const root = mkdtempSync(join(tmpdir(), 'contrast-export-parity-'));
  let failed = 0;
  for (const [i, { channels, ...model }] of PARITY_ENCODERS.entries()) {
    const x = parityImages(channels);
    const [, h, w] = x.shape;
    const input = { height: h, width: w, channels, mean: [0], std: [1] };
    const spec = { model: ExperimentSchema.shape.model.parse({ ...model, dim: 16 }), input };
    const enc = new ContrastEncoder(spec, { rng: new Rng(3) });
    randomizeBatchNorm(enc, 11);
    const dir = join(root, String(i));
    mkdirSync(dir, { recursive: true });
    writeTorchExport(dir, encoderSidecar(enc, input, true), onHost(enc.namedVariables()));
    const f = enc.features(x, false);
    const z = enc.embed(x, false);
    writeFileSync(join(dir, 'x.npy'), npy(x, true));
    writeFileSync(join(dir, 'features.npy'), npy(f));
    writeFileSync(join(dir, 'embedding.npy'), npy(z));
    tf.dispose([x, f, z]);
    enc.dispose();
    const r = spawnSync(python, [script, dir], { encoding: 'utf8' });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.status !== 0 || !line.startsWith('{')) {
      process.stderr.write(`${r.stderr}\n`);
      failed++;
      continue;
    }
    const m = JSON.parse(line) as { features: number; embedding: number; strict: boolean };
    const ok = m.features < 1e-4 && m.embedding < 1e-4 && m.strict;
    if (!ok) failed++;
    const name =
      `${model.encoder}${'stem' in model ? ` ${model.stem}` : ''} width ${model.width}` +
      `${'head' in model ? ` ${model.head}` : ''}`;
    process.stdout.write(
      `${ok ? 'ok  ' : 'FAIL'} ${name.padEnd(36)} features max |diff| ${m.features.toExponential(2)}, ` +
        `projection (L2-normalised) ${m.embedding.toExponential(2)}, strict load ${m.strict}\n`,
    );
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
