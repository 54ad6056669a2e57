import { existsSync } from 'node:fs';
import { BackendError } from '@contrast/core';
import { diagnoseGpu, gpuUnavailableError, probeGpu, type GpuFacts } from './gpu.js';
import type { BackendName, BackendPreference } from './select.js';

/**
 * Device assignment for data-parallel workers (one process per worker): on the
 * GPU build each worker sees exactly one GPU, so its TensorFlow picks that GPU as
 * /device:GPU:0 and its collectives run over NCCL; on the CPU builds the workers
 * share the host and communicate over TensorFlow's ring implementation.
 */

/**
 * The GPUs a parent process may hand to its workers, as CUDA names them: the
 * entries of CUDA_VISIBLE_DEVICES when set (indices, or `GPU-<uuid>` / `MIG-<uuid>`
 * identifiers; CUDA stops at the first invalid entry, so do we), else the indices
 * 0..deviceCount-1. An empty or '-1' CUDA_VISIBLE_DEVICES hides every GPU.
 * @param cudaVisibleDevices the parent's CUDA_VISIBLE_DEVICES (undefined: not set)
 * @param deviceCount how many GPUs the driver lists without that variable
 */
export function visibleGpus(cudaVisibleDevices: string | undefined, deviceCount: number): string[] {
  if (cudaVisibleDevices === undefined) {
    return Array.from({ length: deviceCount }, (_, i) => String(i));
  }
  const ids: string[] = [];
  for (const raw of cudaVisibleDevices.split(',')) {
    const id = raw.trim();
    const index = /^\d+$/.test(id) ? Number(id) : undefined;
    const valid = index !== undefined ? index < deviceCount : /^(GPU|MIG)-[0-9a-fA-F-]+/.test(id);
    if (!valid || ids.includes(id)) break;
    ids.push(id);
  }
  return ids;
}

/**
 * Worker `worker`'s device environment, to merge into the environment it is
 * spawned with (`{ ...process.env, ...workerDeviceEnv(...) }`):
 * - tensorflow-gpu: `{ CUDA_VISIBLE_DEVICES: gpus[worker] }`, one GPU each;
 * - tensorflow / cpu: `{}` (the CPU builds never touch a GPU).
 * Pure: the GPU list comes from `visibleGpus` in the parent.
 * @param worker 0-based worker index (its task index)
 * @param workers how many workers are started
 * @param gpus the parent's visible GPUs (visibleGpus)
 * @throws BackendError on the GPU backend when there are fewer GPUs than workers,
 *   or when `worker` is not in 0..workers-1
 */
export function workerDeviceEnv(
  backend: BackendName,
  worker: number,
  workers: number,
  gpus: readonly string[],
): Record<string, string> {
  if (!Number.isInteger(worker) || worker < 0 || worker >= workers) {
    throw new BackendError(`worker index ${worker} is not in 0..${workers - 1}`, {
      hint: 'pass the worker task index, 0-based',
    });
  }
  if (backend !== 'tensorflow-gpu') return {};
  if (gpus.length < workers) {
    throw new BackendError(
      `${workers} workers need ${workers} GPUs, one each; ${gpus.length} visible (${gpus.join(', ') || 'none'})`,
      {
        hint: `use --workers ${Math.max(1, gpus.length)} or fewer, or make more GPUs visible (CUDA_VISIBLE_DEVICES)`,
      },
    );
  }
  return { CUDA_VISIBLE_DEVICES: gpus[worker]! };
}

/** TensorFlow's collective implementations (the `communication_hint` attribute of CollectiveReduceV2 & co.). */
export type CollectiveCommunication = 'nccl' | 'ring';

/**
 * The collective communication hint for a backend: 'nccl' between GPUs (NVIDIA's
 * collective library, which TensorFlow's GPU build loads as libnccl.so.2),
 * 'ring' between CPU processes (TensorFlow's own gRPC ring all-reduce).
 */
export function collectiveCommunication(backend: BackendName): CollectiveCommunication {
  return backend === 'tensorflow-gpu' ? 'nccl' : 'ring';
}

/** How `--workers N` runs its workers on this machine (workerDevicePlan). */
export interface WorkerDevicePlan {
  /** 'tensorflow-gpu': one GPU per worker; 'cpu-build': the workers choose among the CPU builds. */
  devices: 'tensorflow-gpu' | 'cpu-build';
  /** Each worker's environment additions, in rank order (CONTRAST_BACKEND, CUDA_VISIBLE_DEVICES). */
  env: Record<string, string>[];
}

/**
 * The devices of `workers` local workers, decided in the launcher before any
 * worker starts, from the backend preference and the machine's GPU facts:
 * - `tensorflow` / `cpu`: the CPU builds, nothing added;
 * - `tensorflow-gpu`: the GPU must be usable (diagnoseGpu) and there must be a
 *   GPU per worker; worker i gets CUDA_VISIBLE_DEVICES = the i-th visible GPU and
 *   CONTRAST_BACKEND=tensorflow-gpu (its collectives then use NCCL);
 * - `auto`: the GPU plan when a GPU is usable (then one per worker too: more
 *   workers than GPUs is refused rather than put two workers on one GPU),
 *   else the CPU builds.
 * Pure: `facts` are gathered by the caller (probeGpu with CUDA_VISIBLE_DEVICES
 * unset, so `facts.driver.devices` counts every GPU), undefined when the
 * machine has no NVIDIA device node (then no GPU can be used).
 * @param cudaVisibleDevices the launcher's CUDA_VISIBLE_DEVICES (undefined: not set)
 * @throws BackendError (CONTRAST_BACKEND) when tensorflow-gpu is asked for and
 *   no GPU is usable (each cause with its fix), or when there are fewer visible
 *   GPUs than workers (the fix: fewer workers, or more GPUs visible)
 */
export function workerDevicePlan(
  preference: BackendPreference,
  workers: number,
  facts: GpuFacts | undefined,
  cudaVisibleDevices: string | undefined,
): WorkerDevicePlan {
  const cpu: WorkerDevicePlan = { devices: 'cpu-build', env: new Array(workers).fill({}) };
  if (preference === 'tensorflow' || preference === 'cpu') return cpu;
  const problems = facts
    ? diagnoseGpu({
        ...facts,
        ...(cudaVisibleDevices !== undefined ? { cudaVisibleDevices } : {}),
      })
    : undefined;
  const gpus = facts ? visibleGpus(cudaVisibleDevices, facts.driver.devices.length) : [];
  const usable = problems !== undefined && problems.length === 0 && gpus.length > 0;
  if (preference === 'auto' && !usable) return cpu;
  if (!usable) {
    throw problems && problems.length > 0
      ? gpuUnavailableError(problems)
      : new BackendError(
          `no GPU is usable for tensorflow-gpu: ${facts ? `CUDA_VISIBLE_DEVICES='${cudaVisibleDevices}' leaves none` : 'no NVIDIA device node (/dev/nvidia*)'}`,
          {
            hint: 'make a GPU visible (unset CUDA_VISIBLE_DEVICES, nvidia-smi -L lists them), or run the CPU build with CONTRAST_BACKEND=tensorflow',
          },
        );
  }
  return {
    devices: 'tensorflow-gpu',
    env: Array.from({ length: workers }, (_, i) => ({
      CONTRAST_BACKEND: 'tensorflow-gpu',
      ...workerDeviceEnv('tensorflow-gpu', i, workers, gpus),
    })),
  };
}

/**
 * workerDevicePlan on this machine, for a launcher whose environment is `env`:
 * the preference is CONTRAST_BACKEND (default auto); the GPU facts are probed
 * (with CUDA_VISIBLE_DEVICES unset, to count every GPU) only when
 * tensorflow-gpu is asked for, or auto on a machine with an NVIDIA device node.
 * @throws BackendError for an unknown CONTRAST_BACKEND, and as workerDevicePlan
 */
export function localWorkerDevices(
  workers: number,
  env: NodeJS.ProcessEnv = process.env,
  probe: (env: NodeJS.ProcessEnv) => GpuFacts = probeGpu,
): WorkerDevicePlan {
  const preference = env.CONTRAST_BACKEND ?? 'auto';
  if (!['auto', 'tensorflow-gpu', 'tensorflow', 'cpu'].includes(preference)) {
    throw new BackendError(`unknown backend '${preference}' (CONTRAST_BACKEND)`, {
      hint: 'use auto, tensorflow-gpu, tensorflow or cpu',
    });
  }
  const nodes = ['/dev/nvidiactl', '/dev/nvidia0', '/dev/dxg'];
  const probes =
    preference === 'tensorflow-gpu' || (preference === 'auto' && nodes.some((n) => existsSync(n)));
  const { CUDA_VISIBLE_DEVICES: cudaVisibleDevices, ...others } = env;
  const facts = probes ? probe(others) : undefined;
  return workerDevicePlan(preference as BackendPreference, workers, facts, cudaVisibleDevices);
}
