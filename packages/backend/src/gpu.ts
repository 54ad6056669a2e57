import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { BackendError } from '@contrast/core';
import { gpuBuildFacts, type GpuBuildFacts } from './provision-gpu.js';

/**
 * Whether this machine can run the GPU build, from facts gathered without loading
 * TensorFlow (probeGpu) and decided by a pure function (diagnoseGpu), so every
 * cause is testable with faked facts. The causes, in the order they are reported:
 * no device / driver, a driver too old for CUDA 12, no GPU build set up, a CUDA
 * library missing from the build.
 */

/** One GPU as the CUDA driver API reports it. */
export interface GpuDevice {
  index: number;
  name: string;
  /** Compute capability, e.g. '8.6'. */
  computeCapability: string;
  /** Total memory, MiB. */
  memoryMiB: number;
}

/** What the driver side of the machine offers. */
export interface DriverFacts {
  /** /dev/nvidia0, /dev/nvidiactl, ... (/dev/dxg under WSL2). */
  deviceNodes: string[];
  /** The kernel module's version, e.g. '550.54.14' (/proc/driver/nvidia/version or nvidia-smi). */
  driverVersion?: string;
  /** libcuda.so.1 could be dlopened (what TensorFlow does first). */
  libcudaLoadable: boolean;
  /** Why not, when it could not. */
  libcudaError?: string;
  /** cuDriverGetVersion: the newest CUDA the driver runs, as 1000 * major + 10 * minor (12040 = 12.4). */
  cudaDriverVersion?: number;
  /** The devices cuInit / cuDeviceGet list (after CUDA_VISIBLE_DEVICES). */
  devices: GpuDevice[];
}

export interface GpuFacts {
  driver: DriverFacts;
  build: GpuBuildFacts;
  /** The CUDA_VISIBLE_DEVICES the process runs with (undefined: not set). */
  cudaVisibleDevices?: string;
}

export type GpuCause =
  'no-driver' | 'no-device' | 'driver-too-old' | 'no-gpu-build' | 'cuda-library-missing';

export interface GpuProblem {
  cause: GpuCause;
  message: string;
  fix: string;
}

/**
 * The oldest driver that runs CUDA 12 libraries (CUDA's minor-version
 * compatibility for 12.x; TensorFlow's install guide asks for >= 525.60.13).
 * The CUDA 12.5 toolkit TensorFlow 2.21 was built with ships 555.42.02.
 */
export const MIN_DRIVER_VERSION = '525.60.13';
/** cuDriverGetVersion of the oldest driver that runs CUDA 12 (12.0). */
export const MIN_CUDA_DRIVER_API = 12000;

/** Compares dotted version strings numerically: negative, 0 or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The driver version in /proc/driver/nvidia/version ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  ..."). */
export function parseDriverVersion(procText: string): string | undefined {
  return /Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)/.exec(procText)?.[1];
}

const SETUP_GPU =
  "run 'contrast setup --gpu' (or 'bash scripts/setup.sh --gpu'; about 3.4 GB once)";
const USE_CPU = 'or run on the CPU build with CONTRAST_BACKEND=tensorflow';

/**
 * Every reason the GPU build cannot run here, most fundamental first (empty: it
 * can). Pure: decided from `facts` alone.
 */
export function diagnoseGpu(facts: GpuFacts): GpuProblem[] {
  const { driver, build } = facts;
  const problems: GpuProblem[] = [];
  if (!driver.libcudaLoadable) {
    problems.push({
      cause: 'no-driver',
      message:
        driver.deviceNodes.length === 0
          ? `no NVIDIA driver: no /dev/nvidia* device and libcuda.so.1 is not loadable (${driver.libcudaError ?? 'not found'})`
          : `the NVIDIA driver's libcuda.so.1 is not loadable (${driver.libcudaError ?? 'not found'}) although ${driver.deviceNodes.join(', ')} exist`,
      fix: `install the NVIDIA driver (>= ${MIN_DRIVER_VERSION}) so that libcuda.so.1 is on the loader's path (ldconfig -p | grep libcuda); in a container, run it with the GPU passed through (docker run --gpus all), ${USE_CPU}`,
    });
  } else if (tooOld(driver)) {
    problems.push({
      cause: 'driver-too-old',
      message: `the NVIDIA driver ${driverLabel(driver)} is too old for CUDA 12: TensorFlow 2.21 needs driver >= ${MIN_DRIVER_VERSION}`,
      fix: `update the NVIDIA driver to ${MIN_DRIVER_VERSION} or newer (555.42.02 or newer runs CUDA 12.5 without compatibility mode), ${USE_CPU}`,
    });
  } else if (driver.devices.length === 0) {
    const hidden = facts.cudaVisibleDevices !== undefined;
    problems.push({
      cause: 'no-device',
      message: hidden
        ? `the driver lists no GPU with CUDA_VISIBLE_DEVICES='${facts.cudaVisibleDevices}'`
        : 'the NVIDIA driver loads but lists no GPU',
      fix: hidden
        ? 'unset CUDA_VISIBLE_DEVICES or name a GPU that exists (nvidia-smi -L lists them)'
        : `check the GPU with nvidia-smi, ${USE_CPU}`,
    });
  }
  if (!build.present) {
    problems.push({
      cause: 'no-gpu-build',
      message: build.packageDir
        ? `the GPU build is not set up (no binding of @tensorflow/tfjs-node-gpu linked to the tensorflow 2.21.0 GPU wheel in ${build.packageDir})`
        : 'the GPU build is not set up (@tensorflow/tfjs-node-gpu is not installed)',
      fix: build.packageDir ? SETUP_GPU : `run pnpm install, then ${SETUP_GPU}`,
    });
  } else if (build.missingLibraries.length > 0) {
    problems.push({
      cause: 'cuda-library-missing',
      message: `CUDA libraries missing from the GPU build: ${build.missingLibraries.join(', ')} (looked for in ${build.packageDir}/deps/nvidia/<pkg>/lib)`,
      fix: `run 'contrast setup --gpu --force' to extract the nvidia-*-cu12 wheels again`,
    });
  }
  return problems;
}

function tooOld(d: DriverFacts): boolean {
  if (d.cudaDriverVersion !== undefined && d.cudaDriverVersion < MIN_CUDA_DRIVER_API) return true;
  return d.driverVersion !== undefined && compareVersions(d.driverVersion, MIN_DRIVER_VERSION) < 0;
}

/** '470.82.01 (CUDA 11.4)', from what is known of the driver. */
function driverLabel(d: DriverFacts): string {
  const cuda = d.cudaDriverVersion ? `CUDA ${cudaString(d.cudaDriverVersion)}` : undefined;
  if (d.driverVersion) return cuda ? `${d.driverVersion} (${cuda})` : d.driverVersion;
  return cuda ? `(${cuda})` : '(version unknown)';
}

/** 12040 -> '12.4'. */
export function cudaString(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/**
 * The coded error for a GPU that was asked for and cannot be used: every cause
 * with its fix. @throws nothing; returns the error to throw.
 */
export function gpuUnavailableError(problems: GpuProblem[]): BackendError {
  const lines = problems.map((p) => `- ${p.message}`);
  return new BackendError(
    `the GPU backend (tensorflow-gpu) cannot run here:\n${lines.join('\n')}`,
    { hint: problems.map((p) => p.fix).join('; then ') },
  );
}

/**
 * Asks the CUDA driver API through python3's ctypes (the same dlopen TensorFlow
 * does, without loading TensorFlow): libcuda.so.1's path, cuDriverGetVersion,
 * and each device's name, compute capability and memory. Prints one JSON line.
 */
const CUDA_PROBE_PY = `
import ctypes, json, sys
out = {'loadable': False}
try:
    cuda = ctypes.CDLL('libcuda.so.1')
    out['loadable'] = True
except OSError as e:
    out['error'] = str(e)
    print(json.dumps(out)); sys.exit(0)
v = ctypes.c_int(0)
if cuda.cuDriverGetVersion(ctypes.byref(v)) == 0: out['cudaVersion'] = v.value
rc = cuda.cuInit(0)
devices = []
if rc == 0:
    n = ctypes.c_int(0); cuda.cuDeviceGetCount(ctypes.byref(n))
    for i in range(n.value):
        d = ctypes.c_int(0); cuda.cuDeviceGet(ctypes.byref(d), i)
        name = ctypes.create_string_buffer(256); cuda.cuDeviceGetName(name, 256, d)
        major = ctypes.c_int(0); minor = ctypes.c_int(0)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, d)  # COMPUTE_CAPABILITY_MAJOR
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, d)  # COMPUTE_CAPABILITY_MINOR
        mem = ctypes.c_size_t(0); cuda.cuDeviceTotalMem_v2(ctypes.byref(mem), d)
        devices.append({'index': i, 'name': name.value.decode(), 'computeCapability': f'{major.value}.{minor.value}', 'memoryMiB': mem.value // 2**20})
else:
    out['error'] = f'cuInit failed with CUresult {rc}'
out['devices'] = devices
print(json.dumps(out))
`;

/**
 * The driver facts of this machine (device nodes, /proc, the CUDA driver API
 * through python3, which sees the GPUs `env`'s CUDA_VISIBLE_DEVICES leaves).
 */
export function probeDriver(env: NodeJS.ProcessEnv = process.env): DriverFacts {
  const deviceNodes = existsSync('/dev')
    ? readdirSync('/dev')
        .filter((n) => /^nvidia(\d+|ctl|-uvm)$/.test(n) || n === 'dxg')
        .map((n) => `/dev/${n}`)
    : [];
  let driverVersion: string | undefined;
  try {
    driverVersion = parseDriverVersion(readFileSync('/proc/driver/nvidia/version', 'utf8'));
  } catch {
    const smi = spawnSync('nvidia-smi', ['--query-gpu=driver_version', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    if (smi.status === 0) driverVersion = smi.stdout.trim().split('\n')[0] || undefined;
  }
  const r = spawnSync('python3', ['-c', CUDA_PROBE_PY], { encoding: 'utf8', timeout: 60_000, env });
  let probe: { loadable?: boolean; error?: string; cudaVersion?: number; devices?: GpuDevice[] } =
    {};
  try {
    probe = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as typeof probe;
  } catch {
    probe = {
      loadable: false,
      error: `python3 could not probe libcuda.so.1 (${r.error?.message ?? r.stderr.trim()})`,
    };
  }
  return {
    deviceNodes,
    ...(driverVersion ? { driverVersion } : {}),
    libcudaLoadable: probe.loadable === true,
    ...(probe.error ? { libcudaError: probe.error } : {}),
    ...(probe.cudaVersion ? { cudaDriverVersion: probe.cudaVersion } : {}),
    devices: probe.devices ?? [],
  };
}

/** Every fact diagnoseGpu needs, gathered on this machine. */
export function probeGpu(env: NodeJS.ProcessEnv = process.env): GpuFacts {
  return {
    driver: probeDriver(env),
    build: gpuBuildFacts(),
    ...(env.CUDA_VISIBLE_DEVICES !== undefined
      ? { cudaVisibleDevices: env.CUDA_VISIBLE_DEVICES }
      : {}),
  };
}
