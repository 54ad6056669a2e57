import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { BackendError } from '@contrast/core';
import { autoPicksGpu, checkGpuPlacement, requireUsableGpu } from './gpu-select.js';
import { tensorflowBannerWanted, withNativeStderrSilenced } from './quiet.js';

/**
 * Backend choice: tensorflow-gpu (@tensorflow/tfjs-node-gpu built by `contrast setup
 * --gpu`, when a GPU is usable) > tensorflow (@tensorflow/tfjs-node) > cpu (pure JS,
 * ~100x slower). Override with CONTRAST_BACKEND=tensorflow-gpu|tensorflow|cpu or the
 * `preference` option. Asked for tensorflow-gpu, it runs on a GPU or throws a coded
 * error naming the cause (see diagnoseGpu): never silently on the CPU.
 * TensorFlow's start-up lines (oneDNN notice, absl's pre-init warning) are hidden
 * unless TF_CPP_MIN_LOG_LEVEL=0 (see withNativeStderrSilenced).
 */
export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'cpu';
export type BackendPreference = BackendName | 'auto';

export interface BackendInfo {
  name: BackendName;
  /** tf.getBackend(): 'tensorflow' for both native variants. */
  tfBackend: string;
  tfjsVersion: string;
  /** Version of the native TensorFlow library, when native. */
  tensorflowVersion: string | undefined;
  warnings: string[];
}

const require = createRequire(import.meta.url);
let active: BackendInfo | undefined;
/** The native package this process loaded: one only, both libtensorflows share a soname. */
let loadedPackage: string | undefined;

function tryLoad(pkg: string): { ok: true } | { ok: false; error: string } {
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2'; // read by TensorFlow when the library loads
  try {
    if (tensorflowBannerWanted()) require(pkg);
    else withNativeStderrSilenced(() => require(pkg));
    loadedPackage = pkg;
    return { ok: true };
  } catch (e) {
    return { ok: false, error: (e as Error).message.split('\n')[0] ?? String(e) };
  }
}

function nativeVersion(): string | undefined {
  try {
    const backend = tf.backend() as unknown as { binding?: { TF_Version?: string } };
    return backend.binding?.TF_Version;
  } catch {
    return undefined;
  }
}

/** Selects and initialises the backend once per process; later calls return the same choice. */
export async function initBackend(preference?: BackendPreference): Promise<BackendInfo> {
  const pref = (preference ??
    (process.env.CONTRAST_BACKEND as BackendPreference | undefined) ??
    'auto') as string;
  if (!['auto', 'tensorflow-gpu', 'tensorflow', 'cpu'].includes(pref)) {
    throw new BackendError(`unknown backend '${pref}'`, {
      hint: 'use auto, tensorflow-gpu, tensorflow or cpu',
    });
  }
  if (active) return active;
  const warnings: string[] = [];
  let name: BackendName | undefined;

  if (pref === 'tensorflow-gpu' || (pref === 'auto' && autoPicksGpu(warnings))) {
    if (pref === 'tensorflow-gpu') requireUsableGpu();
    const r = tryLoad('@tensorflow/tfjs-node-gpu');
    if (!r.ok) {
      throw new BackendError(
        `the GPU build (@tensorflow/tfjs-node-gpu) could not be loaded: ${r.error}`,
        {
          hint: "run 'contrast setup --gpu --force' to build it again, or use CONTRAST_BACKEND=tensorflow",
        },
      );
    }
    name = 'tensorflow-gpu';
  }
  if (!name && (pref === 'auto' || pref === 'tensorflow')) {
    const r = tryLoad('@tensorflow/tfjs-node');
    if (r.ok) name = 'tensorflow';
    else if (pref === 'tensorflow') {
      throw new BackendError(`the native TensorFlow backend could not be loaded: ${r.error}`, {
        hint: "run 'contrast setup' (or scripts/setup.sh) to build the binding offline",
      });
    } else
      warnings.push(`native backend unavailable (${r.error}); run 'contrast setup' to build it`);
  }
  if (!name) {
    name = 'cpu';
    if (pref !== 'cpu') {
      warnings.push(
        'FALLING BACK TO THE PURE-JS CPU BACKEND: training will be about 100x slower than native TensorFlow',
      );
    }
  }
  const tfBackend = name === 'cpu' ? 'cpu' : 'tensorflow';
  const ok = await tf.setBackend(tfBackend);
  if (!ok) throw new BackendError(`tf.setBackend('${tfBackend}') failed`);
  await tf.ready();
  if (name === 'tensorflow-gpu') checkGpuPlacement(tf.backend());
  active = {
    name,
    tfBackend,
    tfjsVersion: tf.version.tfjs ?? tf.version_core,
    tensorflowVersion: name === 'cpu' ? undefined : nativeVersion(),
    warnings,
  };
  for (const w of warnings) console.warn(`[contrast] WARNING: ${w}`);
  return active;
}

/**
 * TensorFlow's own JPEG / PNG / GIF / BMP decoder (tfjs-node), for image-folder
 * datasets: bytes -> [H, W, channels] uint8. Needs the native backend.
 */
export function nativeImageDecoder(): (bytes: Uint8Array, channels: number) => tf.Tensor3D {
  const decode = nativeNode().decodeImage;
  return (bytes, channels) => decode(bytes, channels) as tf.Tensor3D;
}

/** TensorFlow's PNG and JPEG encoders (tfjs-node): [H, W, C] uint8 -> file bytes. */
export function nativeImageEncoders(): {
  png(image: tf.Tensor3D): Promise<Uint8Array>;
  jpeg(image: tf.Tensor3D): Promise<Uint8Array>;
} {
  const node = nativeNode();
  return { png: (i) => node.encodePng(i), jpeg: (i) => node.encodeJpeg(i) };
}

interface NodeImageOps {
  decodeImage(b: Uint8Array, c: number): tf.Tensor;
  encodePng(i: tf.Tensor3D): Promise<Uint8Array>;
  encodeJpeg(i: tf.Tensor3D): Promise<Uint8Array>;
}

function nativeNode(): NodeImageOps {
  let node: { node: NodeImageOps } | undefined;
  for (const pkg of loadedPackage ? [loadedPackage] : ['@tensorflow/tfjs-node']) {
    try {
      node = require(pkg) as typeof node;
      break;
    } catch {
      /* try the next */
    }
  }
  if (!node) {
    throw new BackendError('decoding images needs the native backend (@tensorflow/tfjs-node)', {
      hint: 'run scripts/setup.sh, then contrast doctor',
    });
  }
  return node.node;
}
