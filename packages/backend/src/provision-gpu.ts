import { createHash } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { BackendError } from '@contrast/core';
import {
  type BindingTarget,
  defaultCacheDir,
  ensureExtracted,
  ensureWheel,
  type ExtractRule,
  findBinding,
  LIBTENSORFLOW_MEMBER,
  LIBTENSORFLOW_RULES,
  type ProvisionOptions,
  type ProvisionResult,
  provisionBinding,
  type WheelSpec,
} from './provision.js';

/**
 * The GPU build: @tensorflow/tfjs-node-gpu (binding sources byte-identical to
 * tfjs-node's, the same collective-ops patch) built offline against the
 * `tensorflow` wheel from PyPI, which carries CUDA kernels for sm_60..sm_90 plus
 * PTX and dlopens CUDA 12 / cuDNN 9 / NCCL 2 at run time from the `nvidia-*-cu12`
 * wheels its `and-cuda` extra lists (RUNPATH `$ORIGIN/../nvidia/<pkg>/lib`).
 * The CPU build (@tensorflow/tfjs-node) stays the default and untouched: the GPU
 * build is a second package with its own binding, deps/ and lock.
 */
export const TF_GPU_WHEEL: WheelSpec = { name: 'tensorflow', version: '2.21.0' };

/**
 * The CUDA wheels, pinned: what `pip install 'tensorflow[and-cuda]==2.21.0'`
 * resolved on PyPI when this was written, each within the extra's range
 * (METADATA: cuda-* and nvjitlink >=12.5.82,<13; cublas >=12.5.3.2,<13; cudnn
 * >=9.3.0.75,<10; cufft >=11.2.3.61,<12; curand >=10.3.6.82,<11; cusolver
 * >=11.6.3.83,<12; cusparse >=12.5.1.3,<13; nccl >=2.27.7,<3). CUDA 12.9's
 * libraries also carry Blackwell (sm_100/sm_120) kernels, which 12.5's lack.
 */
export const CUDA_WHEELS: readonly WheelSpec[] = [
  { name: 'nvidia-cuda-runtime-cu12', version: '12.9.79' },
  { name: 'nvidia-cuda-nvcc-cu12', version: '12.9.86' },
  { name: 'nvidia-cuda-nvrtc-cu12', version: '12.9.86' },
  { name: 'nvidia-cuda-cupti-cu12', version: '12.9.79' },
  { name: 'nvidia-nvjitlink-cu12', version: '12.9.86' },
  { name: 'nvidia-cublas-cu12', version: '12.9.3.13' },
  { name: 'nvidia-cudnn-cu12', version: '9.28.0.42' },
  { name: 'nvidia-cufft-cu12', version: '11.4.1.4' },
  { name: 'nvidia-curand-cu12', version: '10.3.10.19' },
  { name: 'nvidia-cusolver-cu12', version: '11.7.5.82' },
  { name: 'nvidia-cusparse-cu12', version: '12.5.10.65' },
  { name: 'nvidia-nccl-cu12', version: '2.32.3' },
];

/**
 * The libraries TensorFlow 2.21 dlopens for the GPU (besides the driver's
 * libcuda.so.1), each in its wheel's folder `nvidia/<folder>/lib`.
 */
export const CUDA_LIBRARIES: ReadonlyArray<{ soname: string; folder: string }> = [
  { soname: 'libcudart.so.12', folder: 'cuda_runtime' },
  { soname: 'libcublas.so.12', folder: 'cublas' },
  { soname: 'libcublasLt.so.12', folder: 'cublas' },
  { soname: 'libcufft.so.11', folder: 'cufft' },
  { soname: 'libcusolver.so.11', folder: 'cusolver' },
  { soname: 'libcusparse.so.12', folder: 'cusparse' },
  { soname: 'libcupti.so.12', folder: 'cuda_cupti' },
  { soname: 'libcudnn.so.9', folder: 'cudnn' },
  { soname: 'libnccl.so.2', folder: 'nccl' },
];

/** The cache folder of the GPU build's libtensorflow (lib/, include/). */
export const GPU_LIBTENSORFLOW_DIR = `libtensorflow-gpu-${TF_GPU_WHEEL.version}`;

/** The cache folder of the CUDA libraries (nvidia/<pkg>/...), named by the pins so a new pin is a new folder. */
export function cudaDirName(): string {
  const pins = CUDA_WHEELS.map((w) => `${w.name}==${w.version}`).join('\n');
  return `nvidia-cu12-${createHash('sha256').update(pins).digest('hex').slice(0, 10)}`;
}

const here = createRequire(import.meta.url);

/** Directory of the installed @tensorflow/tfjs-node-gpu package, or undefined. */
export function tfjsNodeGpuDir(): string | undefined {
  try {
    return dirname(here.resolve('@tensorflow/tfjs-node-gpu/package.json'));
  } catch {
    return undefined;
  }
}

/** The wheel holds `nvidia/<folder>/...`: its folder is the package name without nvidia- and -cu12. */
function wheelFolder(spec: WheelSpec): string {
  return spec.name
    .replace(/^nvidia-/, '')
    .replace(/-cu12$/, '')
    .replace(/-/g, '_');
}

/** The GPU build's libtensorflow and CUDA libraries in the cache. Caller holds the cache lock. */
function gpuLibraries(cacheDir: string, log: (l: string) => void) {
  const tfDir = ensureExtracted(
    cacheDir,
    GPU_LIBTENSORFLOW_DIR,
    () => [
      [
        ensureWheel(cacheDir, TF_GPU_WHEEL, LIBTENSORFLOW_MEMBER, '572 MB', log),
        LIBTENSORFLOW_RULES,
      ],
    ],
    log,
  );
  const cudaDir = ensureExtracted(
    cacheDir,
    cudaDirName(),
    () =>
      CUDA_WHEELS.map((spec) => {
        const folder = `nvidia/${wheelFolder(spec)}/`;
        const rules: ExtractRule[] = [[folder, folder]];
        return [ensureWheel(cacheDir, spec, folder, 'a CUDA wheel', log), rules] as const;
      }),
    log,
  );
  return { tfDir, cudaDir };
}

/** The GPU target: deps/lib must lead to the GPU libtensorflow in this cache (not tfjs-node-gpu's own 2.9.1 download). */
export const GPU_TARGET: BindingTarget = {
  packageName: '@tensorflow/tfjs-node-gpu',
  lock: 'tensorflow-gpu.lock',
  libraries: gpuLibraries,
  isLinked(packageDir, cacheDir) {
    try {
      const lib = realpathSync(join(packageDir, 'deps', 'lib', 'libtensorflow_cc.so.2'));
      return (
        lib === realpathSync(join(cacheDir, GPU_LIBTENSORFLOW_DIR, 'lib', 'libtensorflow_cc.so.2'))
      );
    } catch {
      return false;
    }
  },
};

/**
 * `contrast setup --gpu` / `scripts/setup.sh --gpu`: downloads the GPU wheel and
 * the CUDA wheels once into the cache (about 3.4 GB), extracts them aside and
 * checks them, and builds @tensorflow/tfjs-node-gpu's binding against them.
 * Idempotent: a binding that loads, linked to this cache, is left alone.
 * Where no driver is present the binding still loads (TensorFlow runs on the CPU
 * and says so); the GPU is used only through `initBackend('tensorflow-gpu')`,
 * which refuses a run that would not be on a GPU.
 * @throws BackendError when the package is not installed or the build fails.
 */
export function provisionGpuBackend(options: ProvisionOptions = {}): ProvisionResult {
  const packageDir = tfjsNodeGpuDir();
  if (!packageDir) {
    throw new BackendError('@tensorflow/tfjs-node-gpu is not installed', {
      hint: 'run pnpm install in the repository root',
    });
  }
  return provisionBinding(packageDir, GPU_TARGET, options);
}

/** What the GPU build holds: its binding, and which CUDA libraries are missing from deps/nvidia. */
export interface GpuBuildFacts {
  /** The binding is built and linked to the GPU libtensorflow of the cache. */
  present: boolean;
  packageDir?: string;
  /** Sonames of CUDA_LIBRARIES not found where libtensorflow's RUNPATH looks. */
  missingLibraries: string[];
}

/** The GPU build as found on disk (nothing loaded: cheap enough for every backend choice). */
export function gpuBuildFacts(cacheDir: string = defaultCacheDir()): GpuBuildFacts {
  const packageDir = tfjsNodeGpuDir();
  if (!packageDir) return { present: false, missingLibraries: [] };
  const present =
    findBinding(packageDir) !== undefined && GPU_TARGET.isLinked!(packageDir, cacheDir);
  const nvidia = join(packageDir, 'deps', 'nvidia');
  const missingLibraries = present
    ? CUDA_LIBRARIES.filter((l) => !existsSync(join(nvidia, l.folder, 'lib', l.soname))).map(
        (l) => l.soname,
      )
    : [];
  return { present, packageDir, missingLibraries };
}
