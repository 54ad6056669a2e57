import { existsSync } from 'node:fs';
import { BackendError } from '@contrast/core';
import { diagnoseGpu, gpuUnavailableError, probeGpu } from './gpu.js';

/**
 * For `auto`: true when the GPU build can run here. Machines without an NVIDIA
 * device node are decided at once (no probe); on one with a GPU that cannot be
 * used, each reason is added to `warnings` (printed) and the CPU build runs.
 */
export function autoPicksGpu(warnings: string[]): boolean {
  const nodes = ['/dev/nvidiactl', '/dev/nvidia0', '/dev/dxg'];
  if (!nodes.some((n) => existsSync(n))) return false;
  const problems = diagnoseGpu(probeGpu());
  for (const p of problems) {
    warnings.push(
      `a GPU device is present but the GPU backend is not used: ${p.message} (fix: ${p.fix})`,
    );
  }
  return problems.length === 0;
}

/** @throws BackendError naming every cause and its fix when the GPU build cannot run here. */
export function requireUsableGpu(): void {
  const problems = diagnoseGpu(probeGpu());
  if (problems.length > 0) throw gpuUnavailableError(problems);
}

/**
 * After the GPU build loaded: TensorFlow must have placed the binding's ops on a
 * GPU device (the binding's isUsingGpuDevice(), read live: collective ops rename
 * the devices). A GPU build that found no usable GPU runs on the CPU and says so
 * only in its log; this makes that an error.
 * @throws BackendError when ops would run on the CPU
 */
export function checkGpuPlacement(backend: unknown): void {
  const binding = (backend as { binding?: { isUsingGpuDevice?: () => boolean } }).binding;
  if (binding?.isUsingGpuDevice?.() === true) return;
  throw new BackendError(
    'the GPU build loaded but TensorFlow placed its ops on the CPU (it found no usable GPU)',
    {
      hint:
        "run with TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's reason (a CUDA library it could not load, a GPU it does not support); " +
        "'contrast doctor' lists the driver, devices and CUDA libraries found. Or use CONTRAST_BACKEND=tensorflow",
    },
  );
}
