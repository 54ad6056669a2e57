import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { BackendError, ExperimentSchema, Rng } from '@contrast/core';
import { ContrastEncoder } from '@contrast/models';
import { exportedVariables, onHost } from './export.js';
import { encodeNpy } from './npy.js';
import { PARITY_ENCODERS, parityImages, parityLabel, randomizeBatchNorm } from './parity.js';
import { encoderSidecar } from './sidecar.js';
import { writeTorchExport } from './torch-export.js';

/** One torch export to check: a PARITY_ENCODERS entry exported with or without its head. */
export interface TorchParityCase {
  label: string;
  /** The export (model.safetensors, load.py) with x.npy, output.npy and features.npy beside it. */
  dir: string;
  head: boolean;
  /** Width of the exported model's output: the projection's with the head, else the features'. */
  outputDim: number;
  /** max |Contrast's output| over the images: a near-zero output would prove little. */
  outputScale: number;
  /** max |Contrast's pooled features| over the images. */
  featuresScale: number;
}

/** What PyTorch made of one case (python/torch_parity.py); `error` instead when it raised. */
export interface TorchParityResult {
  folder: string;
  /** What `python load.py` printed: the output shape on one zero image, e.g. `(1, 64)`. */
  main?: string;
  /** state_dict keys the generated model lacks / does not know (both empty for a strict load). */
  missing?: string[];
  unexpected?: string[];
  /** max |PyTorch - Contrast| of the exported model's output (eval mode). */
  output?: number;
  /** The same for the pooled features (fc replaced by nn.Identity). */
  features?: number;
  error?: string;
}

const npy = (t: tf.Tensor, nchw = false) => {
  const v = nchw ? tf.transpose(t, [0, 3, 1, 2]) : t;
  const out = encodeNpy(v.dataSync() as Float32Array, v.shape);
  if (nchw) v.dispose();
  return out;
};

/**
 * Exports one PARITY_ENCODERS entry as `contrast export` does (its backbone,
 * plus the head with `head`; BN statistics randomised, seeded) into `dir`, with
 * the first `count` parity images (x.npy, NCHW) and Contrast's eval-mode output
 * and features for them.
 */
export function writeTorchParityCase(
  dir: string,
  entry: (typeof PARITY_ENCODERS)[number],
  head: boolean,
  count: number,
): TorchParityCase {
  const { channels, ...model } = entry;
  const x = parityImages(channels, count);
  const [, height, width] = x.shape;
  const input = { height, width, channels, mean: [0], std: [1] };
  const spec = { model: ExperimentSchema.shape.model.parse({ ...model, dim: 16 }), input };
  const enc = new ContrastEncoder(spec, { rng: new Rng(3) });
  try {
    randomizeBatchNorm(enc, 11);
    mkdirSync(dir, { recursive: true });
    const named = exportedVariables(enc, head);
    writeTorchExport(dir, encoderSidecar(enc, input, head), onHost(named));
    const f = enc.features(x, false);
    const out = head ? enc.project(x, false) : f.clone();
    writeFileSync(join(dir, 'x.npy'), npy(x, true));
    writeFileSync(join(dir, 'features.npy'), npy(f));
    writeFileSync(join(dir, 'output.npy'), npy(out));
    const scale = (t: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(t)).dataSync()[0]!);
    const [outputScale, featuresScale] = [scale(out), scale(f)];
    const outputDim = out.shape[1];
    tf.dispose([f, out]);
    const label = `${parityLabel(entry)}, ${head ? 'with the head' : 'backbone only'}`;
    return { label, dir, head, outputDim, outputScale, featuresScale };
  } finally {
    x.dispose();
    enc.dispose();
  }
}

/**
 * Loads each folder's export through its generated `load.py` with the given
 * Python (a venv with scripts/torch-requirements.txt) and compares PyTorch's
 * eval-mode output with Contrast's (python/torch_parity.py); one result per folder.
 * @throws BackendError when the Python cannot run the script at all.
 */
export function runTorchParity(python: string, dirs: readonly string[]): TorchParityResult[] {
  const script = fileURLToPath(new URL('../python/torch_parity.py', import.meta.url));
  const r = spawnSync(python, [script, ...dirs], {
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
  });
  const results = (r.stdout ?? '')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as TorchParityResult);
  if (r.status !== 0 || results.length !== dirs.length) {
    throw new BackendError(
      `${python} ${script} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr}`,
      { hint: 'build the PyTorch venv with bash scripts/setup.sh --torch-venv' },
    );
  }
  return results;
}

/**
 * The largest |PyTorch - Contrast| accepted, relative to max(1, max |Contrast's
 * values|). Both sides compute in float32, but TensorFlow's (oneDNN) and
 * PyTorch's CPU kernels sum convolutions and apply BN in different orders, so
 * the outputs differ by rounding, which grows with their magnitude: measured up
 * to 7.7e-7 of it (3.8e-5 on ResNet-50's features of magnitude 50 over 256
 * images, about 6 float32 ulps; 3.4e-7 on the ConvNet). 1e-5 leaves a 13x
 * margin, and is 1e-5 to 5e-4 absolute on these outputs (around the 1e-4 an
 * absolute bound would give).
 * Real mistakes sit far above it: a swapped running mean / variance, a wrong
 * padding or a missing layer change outputs by 1e-2 and more; even BN's epsilon
 * at 1e-3 instead of 1e-5 moved the ConvNet's features by 2.7e-3 (1.4e-3 of
 * their magnitude).
 */
export const TORCH_PARITY_RTOL = 1e-5;

/** What is wrong with one case's result (empty when the export passes). */
export function torchParityProblems(c: TorchParityCase, r: TorchParityResult): string[] {
  if (r.error !== undefined) return [`PyTorch raised: ${r.error.trim()}`];
  const problems: string[] = [];
  if (r.main !== `(1, ${c.outputDim})`) {
    problems.push(`python load.py printed ${r.main}, not (1, ${c.outputDim})`);
  }
  if (r.missing?.length) problems.push(`keys missing from the export: ${r.missing.join(', ')}`);
  if (r.unexpected?.length) {
    problems.push(`keys the model does not have: ${r.unexpected.join(', ')}`);
  }
  const check = (what: string, diff: number | undefined, scale: number) => {
    const bound = TORCH_PARITY_RTOL * Math.max(1, scale);
    if (!(diff !== undefined && diff <= bound)) {
      problems.push(`${what} max |diff| ${diff} over ${bound.toExponential(2)}`);
    }
  };
  check('output', r.output, c.outputScale);
  check('features', r.features, c.featuresScale);
  if (c.outputScale < 0.1) problems.push(`Contrast's output is near zero (${c.outputScale})`);
  return problems;
}
