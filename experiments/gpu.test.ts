import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { diagnoseGpu, probeGpu } from '@contrast/backend';

/**
 * The GPU backend end to end, through the built command and a child process of
 * its own (this test process already runs the CPU build, and the two
 * libtensorflows share a soname: one process loads one of them).
 * The training test runs where a GPU is usable; elsewhere it is skipped, and
 * this is the only test in the repository allowed to be.
 */
const repo = join(import.meta.dirname, '..');
const bin = join(repo, 'packages/cli/dist/bin.js');
const problems = diagnoseGpu(probeGpu());
const gpu = problems.length === 0;
if (!gpu) {
  console.log(
    `[gpu.test] no usable GPU here, so 'training on the GPU' is skipped: ${problems.map((p) => p.message).join('; ')}`,
  );
}

function cli(args: string[], env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, [bin, ...args], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, NODE_OPTIONS: '', ...env },
  });
}

describe('asking for the GPU backend where it cannot run', () => {
  it('train exits 2 with CONTRAST_BACKEND naming the cause and its fix, before any step', () => {
    // hiding every GPU makes this hold on any machine; here it also has no driver
    const env = { CONTRAST_BACKEND: 'tensorflow-gpu', CUDA_VISIBLE_DEVICES: '' };
    const expected = diagnoseGpu(probeGpu({ ...process.env, ...env }));
    expect(expected.length).toBeGreaterThan(0);
    const r = cli(['train', 'experiments/moco-fmnist.yaml'], env);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /error \[CONTRAST_BACKEND\]: the GPU backend \(tensorflow-gpu\) cannot run here/,
    );
    for (const p of expected) expect(r.stderr).toContain(p.message);
    expect(r.stderr).toMatch(/fix: /);
    expect(r.stderr).not.toMatch(/step 1\b|img\/s/);
  });

  it('pnpm bench --gpu refuses with the coded error instead of measuring the CPU', () => {
    const r = spawnSync(
      process.execPath,
      [join(repo, 'packages/bench/dist/bin.js'), '--gpu', '--quick', '--no-leak'],
      {
        cwd: repo,
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, NODE_OPTIONS: '', CUDA_VISIBLE_DEVICES: '' },
      },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /^error \[CONTRAST_BACKEND\]: the GPU backend \(tensorflow-gpu\) cannot run here/,
    );
    expect(r.stderr).not.toMatch(/ours\s+moco/); // no row was measured
  });

  it('doctor lists the driver, devices and GPU build, and fails them when the GPU is asked for', () => {
    const plain = cli(['doctor', '--json'], {});
    const asked = cli(['doctor', '--json'], {
      CONTRAST_BACKEND: 'tensorflow-gpu',
      CUDA_VISIBLE_DEVICES: '',
    });
    const checks = (s: string) =>
      Object.fromEntries(
        (JSON.parse(s) as { checks: { name: string; ok: boolean; detail: string }[] }).checks.map(
          (c) => [c.name, c],
        ),
      );
    const a = checks(asked.stdout);
    expect(asked.status).toBe(1);
    expect(a['backend']).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/cannot run here/),
    });
    expect(a['gpu devices']).toMatchObject({ ok: false, detail: 'none' });
    const p = checks(plain.stdout);
    expect(Object.keys(p)).toEqual(
      expect.arrayContaining(['gpu driver', 'gpu devices', 'gpu build']),
    );
    expect(p['gpu driver']!.ok).toBe(true); // the GPU is optional
  });
});

/** A few MoCo steps in a process of its own; prints the backend, the placement and the losses. */
const TRAIN_ON_GPU = `
import { createRequire } from 'node:module';
import { join } from 'node:path';
createRequire(join(process.cwd(), 'node_modules/@contrast/cli/package.json'))('reflect-metadata');
const tf = await import('@tensorflow/tfjs');
const { initBackend } = await import('@contrast/backend');
const { builtinPlugins } = await import('@contrast/cli');
const { createCatalog, createStepHarness } = await import('@contrast/trainer');
const info = await initBackend('tensorflow-gpu');
const h = createStepHarness(
  { name: 'gpu', seed: 0, data: { trainSubset: 512 }, model: { encoder: 'convnet', width: 0.5, dim: 32 },
    strategy: { name: 'momentum-queue', queueSize: 256 }, optim: { batchSize: 64, epochs: 1 },
    eval: { knn: { every: 0 }, baselines: false } },
  createCatalog(builtinPlugins()),
);
const { losses, tensorCounts } = h.run(4);
h.dispose();
console.log(JSON.stringify({ name: info.name, onGpu: tf.backend().binding.isUsingGpuDevice(), losses, tensorCounts }));
`;

describe.runIf(gpu)('training on the GPU', () => {
  it('trains 4 MoCo steps with the ops on a GPU device', () => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', TRAIN_ON_GPU], {
      cwd: join(repo, 'experiments'),
      encoding: 'utf8',
      timeout: 300_000,
      // TensorFlow's own log names the devices it created
      env: { ...process.env, NODE_OPTIONS: '', TF_CPP_MIN_LOG_LEVEL: '0' },
    });
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      name: string;
      onGpu: boolean;
      losses: number[];
      tensorCounts: number[];
    };
    expect(out).toMatchObject({ name: 'tensorflow-gpu', onGpu: true });
    expect(r.stderr).toMatch(/Created device .*device:GPU:0/);
    expect(out.losses).toHaveLength(4);
    for (const l of out.losses) expect(Number.isFinite(l)).toBe(true);
    expect(new Set(out.tensorCounts).size).toBe(1); // no tensor leaks on the GPU either
  });
});
