import type { DoctorCheck } from './doctor.js';
import { cudaString, diagnoseGpu, type GpuFacts, probeGpu } from './gpu.js';
import { CUDA_LIBRARIES, CUDA_WHEELS, TF_GPU_WHEEL } from './provision-gpu.js';

/**
 * `contrast doctor`'s GPU lines: the driver, the devices it lists, and the GPU
 * build with the CUDA / cuDNN libraries it found. On a machine without a GPU they
 * pass (the GPU is optional) unless CONTRAST_BACKEND=tensorflow-gpu asks for it;
 * each problem carries its fix either way.
 * @param facts what probeGpu() finds on this machine (a parameter for tests)
 */
export function gpuChecks(
  facts: GpuFacts = probeGpu(),
  env: NodeJS.ProcessEnv = process.env,
): DoctorCheck[] {
  const wanted = env.CONTRAST_BACKEND === 'tensorflow-gpu';
  const problems = diagnoseGpu(facts);
  const fixOf = (...causes: string[]) => {
    const p = problems.find((x) => causes.includes(x.cause));
    return p ? { fix: p.fix } : {};
  };
  const { driver, build } = facts;
  const driverDetail = driver.libcudaLoadable
    ? `NVIDIA driver ${driver.driverVersion ?? '(version unknown)'}, libcuda.so.1 loads${driver.cudaDriverVersion ? `, runs CUDA <= ${cudaString(driver.cudaDriverVersion)}` : ''}`
    : `none: ${driver.deviceNodes.length ? driver.deviceNodes.join(', ') : 'no /dev/nvidia*'}; libcuda.so.1 not loadable (${driver.libcudaError ?? 'not found'})`;
  const driverOk = !problems.some((p) => p.cause === 'no-driver' || p.cause === 'driver-too-old');
  const devices = driver.devices.map(
    (d) => `${d.index}: ${d.name} (compute ${d.computeCapability}, ${d.memoryMiB} MiB)`,
  );
  const version = new Map(
    CUDA_WHEELS.map((w) => [w.name.replace(/^nvidia-|-cu12$/g, '').replace(/-/g, '_'), w.version]),
  );
  const found = CUDA_LIBRARIES.filter((l) => !build.missingLibraries.includes(l.soname)).map((l) =>
    `${l.soname} ${version.get(l.folder) ?? ''}`.trim(),
  );
  const buildDetail = build.present
    ? `@tensorflow/tfjs-node-gpu against ${TF_GPU_WHEEL.name} ${TF_GPU_WHEEL.version} (CUDA 12, cuDNN 9); CUDA libraries found: ${found.join(', ')}${build.missingLibraries.length ? `; MISSING: ${build.missingLibraries.join(', ')}` : ''}`
    : 'not set up (optional: contrast setup --gpu, about 3.4 GB once)';
  const buildOk = !problems.some(
    (p) => p.cause === 'no-gpu-build' || p.cause === 'cuda-library-missing',
  );
  return [
    {
      name: 'gpu driver',
      ok: driverOk || !wanted,
      detail: driverDetail,
      ...fixOf('no-driver', 'driver-too-old'),
    },
    {
      name: 'gpu devices',
      ok: devices.length > 0 || !wanted,
      detail: devices.length ? devices.join('; ') : 'none',
      ...fixOf('no-device'),
    },
    {
      name: 'gpu build',
      ok: buildOk || !wanted,
      detail: buildDetail,
      ...fixOf('no-gpu-build', 'cuda-library-missing'),
    },
  ];
}
