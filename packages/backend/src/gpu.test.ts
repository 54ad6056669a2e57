import { describe, expect, it } from 'vitest';
import {
  collectiveCommunication,
  localWorkerDevices,
  visibleGpus,
  workerDeviceEnv,
  workerDevicePlan,
} from './devices.js';
import { gpuChecks } from './gpu-doctor.js';
import {
  compareVersions,
  diagnoseGpu,
  type DriverFacts,
  type GpuFacts,
  gpuUnavailableError,
  parseDriverVersion,
  probeGpu,
} from './gpu.js';
import { spawnSync } from 'node:child_process';
import { checkGpuPlacement } from './gpu-select.js';
import { bindingLoads } from './provision.js';
import { gpuBuildFacts, type GpuBuildFacts } from './provision-gpu.js';

const a100 = {
  index: 0,
  name: 'NVIDIA A100-SXM4-40GB',
  computeCapability: '8.0',
  memoryMiB: 40536,
};
const driver: DriverFacts = {
  deviceNodes: ['/dev/nvidia0', '/dev/nvidiactl'],
  driverVersion: '550.54.14',
  libcudaLoadable: true,
  cudaDriverVersion: 12040,
  devices: [a100],
};
const noDriver: DriverFacts = {
  deviceNodes: [],
  libcudaLoadable: false,
  libcudaError: 'libcuda.so.1: cannot open shared object file: No such file or directory',
  devices: [],
};
const built: GpuBuildFacts = {
  present: true,
  packageDir: '/pkg/tfjs-node-gpu',
  missingLibraries: [],
};
const notBuilt: GpuBuildFacts = {
  present: false,
  packageDir: '/pkg/tfjs-node-gpu',
  missingLibraries: [],
};
const facts = (d: Partial<DriverFacts>, b: GpuBuildFacts = built, cvd?: string): GpuFacts => ({
  driver: { ...driver, ...d },
  build: b,
  ...(cvd !== undefined ? { cudaVisibleDevices: cvd } : {}),
});
const causes = (f: GpuFacts) => diagnoseGpu(f).map((p) => p.cause);

describe('diagnoseGpu (faked driver and build facts)', () => {
  it('a loadable CUDA 12 driver with a GPU and the GPU build: usable', () => {
    expect(diagnoseGpu(facts({}))).toEqual([]);
  });

  it('no driver and no GPU build: both causes, the driver first, each with its fix', () => {
    const problems = diagnoseGpu({ driver: noDriver, build: notBuilt });
    expect(problems.map((p) => p.cause)).toEqual(['no-driver', 'no-gpu-build']);
    expect(problems[0]!.message).toMatch(
      /no \/dev\/nvidia\* device and libcuda\.so\.1 is not loadable/,
    );
    expect(problems[0]!.fix).toMatch(/install the NVIDIA driver \(>= 525\.60\.13\)/);
    expect(problems[1]!.fix).toMatch(/contrast setup --gpu/);
  });

  it('device nodes without a loadable libcuda.so.1 say which nodes exist', () => {
    const [p] = diagnoseGpu(facts({ ...noDriver, deviceNodes: ['/dev/nvidia0'] }));
    expect(p!.message).toMatch(/libcuda\.so\.1 is not loadable .* although \/dev\/nvidia0 exist/);
  });

  it('driver older than 525.60.13 (CUDA 12 minimum) is too old; 525.60.13 itself is not', () => {
    expect(causes(facts({ driverVersion: '470.82.01', cudaDriverVersion: 11040 }))).toEqual([
      'driver-too-old',
    ]);
    const [old] = diagnoseGpu(facts({ driverVersion: '525.60.12', cudaDriverVersion: undefined }));
    expect(old!.message).toMatch(/driver 525\.60\.12 is too old for CUDA 12.*>= 525\.60\.13/);
    expect(causes(facts({ driverVersion: '525.60.13', cudaDriverVersion: 12000 }))).toEqual([]);
    // the CUDA version the driver reports decides when the kernel module's is unknown
    expect(causes(facts({ driverVersion: undefined, cudaDriverVersion: 11080 }))).toEqual([
      'driver-too-old',
    ]);
  });

  it('no device listed: blames CUDA_VISIBLE_DEVICES when it is set', () => {
    const [p] = diagnoseGpu(facts({ devices: [] }, built, ''));
    expect(p).toMatchObject({
      cause: 'no-device',
      message: expect.stringMatching(/CUDA_VISIBLE_DEVICES=''/),
    });
    expect(p!.fix).toMatch(/unset CUDA_VISIBLE_DEVICES/);
  });

  it('a CUDA library missing from the build is named', () => {
    const f = facts({}, { ...built, missingLibraries: ['libcudnn.so.9'] });
    const [p] = diagnoseGpu(f);
    expect(p).toMatchObject({ cause: 'cuda-library-missing' });
    expect(p!.message).toMatch(/libcudnn\.so\.9/);
    expect(p!.fix).toMatch(/contrast setup --gpu --force/);
  });

  it('the coded error lists every cause and every fix', () => {
    const e = gpuUnavailableError(diagnoseGpu({ driver: noDriver, build: notBuilt }));
    expect(e.code).toBe('CONTRAST_BACKEND');
    expect(e.message).toMatch(
      /tensorflow-gpu.*cannot run here:\n- no NVIDIA driver.*\n- the GPU build is not set up/s,
    );
    expect(e.hint).toMatch(/NVIDIA driver.*; then run 'contrast setup --gpu'/s);
  });
});

describe('driver facts', () => {
  it('reads the version of the proprietary and of the open kernel module', () => {
    expect(
      parseDriverVersion(
        'NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\nGCC version:  gcc version 12.3.0',
      ),
    ).toBe('550.54.14');
    expect(
      parseDriverVersion(
        'NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build',
      ),
    ).toBe('570.86.15');
    expect(parseDriverVersion('garbage')).toBeUndefined();
  });

  it('compares versions numerically, not as text', () => {
    expect(compareVersions('535.104.05', '525.60.13')).toBeGreaterThan(0);
    expect(compareVersions('525.60.13', '525.60.13')).toBe(0);
    expect(compareVersions('525.9', '525.60.13')).toBeLessThan(0); // '9' > '6' as text
  });
});

describe('one GPU per data-parallel worker', () => {
  it('visible GPUs: the driver indices, or CUDA_VISIBLE_DEVICES up to its first invalid entry', () => {
    expect(visibleGpus(undefined, 4)).toEqual(['0', '1', '2', '3']);
    expect(visibleGpus('2,0', 4)).toEqual(['2', '0']);
    expect(visibleGpus('1,7,2', 4)).toEqual(['1']); // 7 does not exist: CUDA ignores it and what follows
    expect(visibleGpus('', 4)).toEqual([]);
    expect(visibleGpus('-1', 4)).toEqual([]);
    expect(visibleGpus('GPU-8f3a2b1c-0d4e-11ee-be56-0242ac120002,1', 2)).toEqual([
      'GPU-8f3a2b1c-0d4e-11ee-be56-0242ac120002',
      '1',
    ]);
  });

  it('worker i sees gpus[i] on the GPU backend and nothing changes on the CPU builds', () => {
    expect(workerDeviceEnv('tensorflow-gpu', 0, 2, ['2', '0'])).toEqual({
      CUDA_VISIBLE_DEVICES: '2',
    });
    expect(workerDeviceEnv('tensorflow-gpu', 1, 2, ['2', '0'])).toEqual({
      CUDA_VISIBLE_DEVICES: '0',
    });
    expect(workerDeviceEnv('tensorflow', 1, 2, [])).toEqual({});
    expect(workerDeviceEnv('cpu', 0, 1, ['0'])).toEqual({});
  });

  it('more workers than GPUs, or a worker out of range, is a coded error with the fix', () => {
    expect(() => workerDeviceEnv('tensorflow-gpu', 0, 3, ['0', '1'])).toThrow(
      /3 workers need 3 GPUs, one each; 2 visible \(0, 1\)/,
    );
    try {
      workerDeviceEnv('tensorflow-gpu', 0, 3, ['0', '1']);
    } catch (e) {
      expect(e).toMatchObject({
        code: 'CONTRAST_BACKEND',
        hint: expect.stringMatching(/--workers 2/),
      });
    }
    expect(() => workerDeviceEnv('tensorflow', 2, 2, [])).toThrow(
      /worker index 2 is not in 0\.\.1/,
    );
  });

  it('collectives: NCCL between GPUs, the ring between CPU processes', () => {
    expect(collectiveCommunication('tensorflow-gpu')).toBe('nccl');
    expect(collectiveCommunication('tensorflow')).toBe('ring');
    expect(collectiveCommunication('cpu')).toBe('ring');
  });
});

describe('--workers N: the launcher gives each worker one GPU (faked device lists)', () => {
  const gpu = (index: number) => ({ ...a100, index });
  const fourGpus = facts({ devices: [0, 1, 2, 3].map(gpu) });

  it('tensorflow-gpu: worker i gets the i-th visible GPU and the GPU backend', () => {
    expect(workerDevicePlan('tensorflow-gpu', 2, fourGpus, undefined)).toEqual({
      devices: 'tensorflow-gpu',
      env: [
        { CONTRAST_BACKEND: 'tensorflow-gpu', CUDA_VISIBLE_DEVICES: '0' },
        { CONTRAST_BACKEND: 'tensorflow-gpu', CUDA_VISIBLE_DEVICES: '1' },
      ],
    });
    // the launcher's own CUDA_VISIBLE_DEVICES is the list the workers share out
    expect(workerDevicePlan('tensorflow-gpu', 2, fourGpus, '3,1').env).toEqual([
      { CONTRAST_BACKEND: 'tensorflow-gpu', CUDA_VISIBLE_DEVICES: '3' },
      { CONTRAST_BACKEND: 'tensorflow-gpu', CUDA_VISIBLE_DEVICES: '1' },
    ]);
  });

  it('auto takes the GPUs when they are usable, the CPU builds otherwise', () => {
    expect(workerDevicePlan('auto', 4, fourGpus, undefined).devices).toBe('tensorflow-gpu');
    expect(workerDevicePlan('auto', 2, undefined, undefined)).toEqual({
      devices: 'cpu-build',
      env: [{}, {}],
    });
    expect(workerDevicePlan('auto', 2, facts({ driverVersion: '470.82.01' }), undefined)).toEqual({
      devices: 'cpu-build',
      env: [{}, {}],
    });
    expect(workerDevicePlan('tensorflow', 2, fourGpus, undefined).devices).toBe('cpu-build');
  });

  it('more workers than GPUs is a coded error with the fix, with tensorflow-gpu and with auto', () => {
    for (const preference of ['tensorflow-gpu', 'auto'] as const) {
      expect(() => workerDevicePlan(preference, 3, fourGpus, '2,0')).toThrow(
        expect.objectContaining({
          code: 'CONTRAST_BACKEND',
          message: expect.stringMatching(/3 workers need 3 GPUs, one each; 2 visible \(2, 0\)/),
          hint: expect.stringMatching(/--workers 2 or fewer/),
        }),
      );
    }
  });

  it('tensorflow-gpu without a usable GPU: the causes and their fixes, never the CPU', () => {
    expect(() =>
      workerDevicePlan('tensorflow-gpu', 2, { driver: noDriver, build: built }, undefined),
    ).toThrow(
      expect.objectContaining({
        code: 'CONTRAST_BACKEND',
        message: expect.stringMatching(/no NVIDIA driver/),
      }),
    );
    expect(() => workerDevicePlan('tensorflow-gpu', 1, fourGpus, '')).toThrow(
      expect.objectContaining({
        code: 'CONTRAST_BACKEND',
        hint: expect.stringMatching(/CUDA_VISIBLE_DEVICES/),
      }),
    );
  });

  it('the launcher probes with CUDA_VISIBLE_DEVICES unset, and only when a GPU may be used', () => {
    const seen: NodeJS.ProcessEnv[] = [];
    const probe = (env: NodeJS.ProcessEnv) => (seen.push(env), fourGpus);
    const plan = localWorkerDevices(
      2,
      { CONTRAST_BACKEND: 'tensorflow-gpu', CUDA_VISIBLE_DEVICES: '2,3', HOME: '/h' },
      probe,
    );
    expect(plan.env.map((e) => e.CUDA_VISIBLE_DEVICES)).toEqual(['2', '3']);
    expect(seen).toEqual([{ CONTRAST_BACKEND: 'tensorflow-gpu', HOME: '/h' }]);
    expect(localWorkerDevices(2, { CONTRAST_BACKEND: 'tensorflow' }, probe).devices).toBe(
      'cpu-build',
    );
    expect(seen).toHaveLength(1);
    expect(() => localWorkerDevices(2, { CONTRAST_BACKEND: 'gpu' }, probe)).toThrow(
      /unknown backend 'gpu'/,
    );
  });
});

describe('doctor GPU lines', () => {
  it('without a GPU: informational (ok) unless the GPU backend is asked for, fixes shown', () => {
    const f: GpuFacts = { driver: noDriver, build: notBuilt };
    const byName = (env: NodeJS.ProcessEnv) =>
      Object.fromEntries(gpuChecks(f, env).map((c) => [c.name, c]));
    const plain = byName({});
    expect(plain['gpu driver']).toMatchObject({
      ok: true,
      detail: expect.stringMatching(/^none: no \/dev\/nvidia\*; libcuda\.so\.1 not loadable/),
    });
    expect(plain['gpu devices']).toMatchObject({ ok: true, detail: 'none' });
    expect(plain['gpu build']).toMatchObject({
      ok: true,
      fix: expect.stringMatching(/contrast setup --gpu/),
    });
    const asked = byName({ CONTRAST_BACKEND: 'tensorflow-gpu' });
    expect([asked['gpu driver']!.ok, asked['gpu devices']!.ok, asked['gpu build']!.ok]).toEqual([
      false,
      false,
      false,
    ]);
  });

  it('with a GPU: the driver, each device and the CUDA / cuDNN libraries with their versions', () => {
    const checks = gpuChecks(facts({}), { CONTRAST_BACKEND: 'tensorflow-gpu' });
    const byName = Object.fromEntries(checks.map((c) => [c.name, c]));
    expect(checks.every((c) => c.ok)).toBe(true);
    expect(byName['gpu driver']!.detail).toBe(
      'NVIDIA driver 550.54.14, libcuda.so.1 loads, runs CUDA <= 12.4',
    );
    expect(byName['gpu devices']!.detail).toBe('0: NVIDIA A100-SXM4-40GB (compute 8.0, 40536 MiB)');
    expect(byName['gpu build']!.detail).toMatch(
      /libcudart\.so\.12 12\.9\.79, .*libcudnn\.so\.9 9\.28\.0\.42, libnccl\.so\.2 2\.32\.3/,
    );
  });
});

describe('after loading the GPU build', () => {
  it('ops on the CPU are an error, ops on a GPU are not', () => {
    const on = (gpu: boolean) => ({ binding: { isUsingGpuDevice: () => gpu } });
    expect(() => checkGpuPlacement(on(true))).not.toThrow();
    expect(() => checkGpuPlacement(on(false))).toThrow(
      /GPU build loaded but TensorFlow placed its ops on the CPU/,
    );
    expect(() => checkGpuPlacement({})).toThrow(/placed its ops on the CPU/);
  });
});

describe('this machine', () => {
  it('the GPU build, when set up, loads with the collective ops; otherwise it is reported missing', () => {
    const build = gpuBuildFacts();
    const problems = diagnoseGpu(probeGpu()).map((p) => p.cause);
    if (build.present) {
      // where no driver is present TensorFlow runs this build on the CPU: loading is what is checked
      const check = bindingLoads(build.packageDir!);
      expect(check).toMatchObject({ ok: true, collectiveOps: true });
      expect(build.missingLibraries).toEqual([]);
      expect(problems).not.toContain('no-gpu-build');
      // the binding's own answer, in a process of its own: a GPU device exactly when a driver lists one
      const r = spawnSync(
        process.execPath,
        [
          '-e',
          `const tf = require(${JSON.stringify(build.packageDir)}); console.log(tf.backend().binding.isUsingGpuDevice())`,
        ],
        { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '', TF_CPP_MIN_LOG_LEVEL: '3' } },
      );
      expect(r.stdout.trim()).toBe(String(problems.length === 0));
    } else {
      expect(problems).toContain('no-gpu-build');
    }
  });
});
