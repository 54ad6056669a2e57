import { BackendError } from '@contrast/core';
import type { BackendName } from './select.js';

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
