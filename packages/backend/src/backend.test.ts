import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { runDoctor } from './doctor.js';
import {
  bindingLoads,
  findBinding,
  provisionNativeBackend,
  sourcesPatched,
  tfjsNodeDir,
} from './provision.js';
import { initBackend } from './select.js';

describe('backend', () => {
  it('selects the native TensorFlow backend and reports its version', async () => {
    const info = await initBackend();
    expect(info.name).toBe('tensorflow');
    expect(tf.getBackend()).toBe('tensorflow');
    expect(info.tensorflowVersion).toMatch(/^2\.\d+/);
  });

  it('provisioning is idempotent: a working binding is left alone, quickly', () => {
    const t0 = performance.now();
    const r = provisionNativeBackend({ log: () => {} });
    expect(r.action).toBe('present');
    expect(r.bindingPath).toBe(findBinding(tfjsNodeDir()!));
    expect(performance.now() - t0).toBeLessThan(15_000);
  });

  it('the installed binding carries the collective-ops patch; unpatched sources are told apart', () => {
    const pkg = tfjsNodeDir()!;
    expect(sourcesPatched(pkg)).toBe(true);
    expect(bindingLoads(pkg)).toMatchObject({ ok: true, collectiveOps: true });
    const unpatched = mkdtempSync(join(tmpdir(), 'contrast-unpatched-'));
    mkdirSync(join(unpatched, 'binding'));
    writeFileSync(join(unpatched, 'binding', 'tfjs_binding.cc'), '{"getNumOfTensors", nullptr}');
    expect(sourcesPatched(unpatched)).toBe(false);
    expect(sourcesPatched(join(unpatched, 'missing'))).toBe(false);
  });

  it('refuses an unknown backend name with the choices', async () => {
    await expect(initBackend('tpu' as never)).rejects.toThrow(
      /unknown backend 'tpu'.*auto, tensorflow-gpu, tensorflow or cpu/s,
    );
  });

  it('doctor reports every check with a fix for what fails', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'contrast-doctor-')), 'a-file');
    writeFileSync(file, '');
    const checks = await runDoctor({
      datasetDirs: { 'fashion-mnist': ['/nonexistent'] },
      runDir: join(file, 'runs'),
    });
    const byName = Object.fromEntries(checks.map((c) => [c.name, c]));
    expect(byName['backend']!.ok).toBe(true);
    expect(byName['native binding']!.ok).toBe(true);
    expect(byName['collective ops']).toMatchObject({
      ok: true,
      detail: expect.stringMatching(/^available/),
    });
    expect(byName['dataset fashion-mnist']).toMatchObject({
      ok: false,
      fix: expect.stringContaining('dataset-fashion-mnist'),
    });
    expect(byName['run directory']).toMatchObject({
      ok: false,
      fix: expect.stringContaining('tracking.dir'),
    });
  });
});
