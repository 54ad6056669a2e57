import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { decodeBundle, encodeBundle, readBundle, writeFileAtomic } from './state.js';
import { Rng } from './rng.js';

describe('tensor bundles', () => {
  it('round-trips float32 and int32 tensors and values', () => {
    const buf = encodeBundle(
      {
        w: tf.tensor2d([
          [1.5, -2],
          [3, 4],
        ]),
        ptr: tf.tensor1d([7], 'int32'),
      },
      { step: 12 },
    );
    const back = decodeBundle(buf);
    expect(back.tensors.w!.arraySync()).toEqual([
      [1.5, -2],
      [3, 4],
    ]);
    expect(back.tensors.ptr!.dtype).toBe('int32');
    expect(back.values).toEqual({ step: 12 });
  });

  it('detects truncation and corruption', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-bundle-'));
    const path = join(dir, 's.bin');
    writeFileAtomic(path, encodeBundle({ w: tf.ones([64]) }));
    const good = readFileSync(path);
    writeFileSync(path, good.subarray(0, good.length - 10));
    expect(() => readBundle(path)).toThrow(/payload is .* bytes/);
    const flipped = Buffer.from(good);
    flipped[flipped.length - 1] = flipped[flipped.length - 1]! ^ 0xff;
    writeFileSync(path, flipped);
    expect(() => readBundle(path)).toThrow(/checksum mismatch/);
    writeFileSync(path, 'hello world, not a bundle');
    expect(() => readBundle(path)).toThrow(expect.objectContaining({ code: 'CONTRAST_STATE' }));
  });
});

describe('Rng', () => {
  it('is reproducible from a seed and from a saved state', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    expect(Array.from({ length: 5 }, () => a.next())).toEqual(
      Array.from({ length: 5 }, () => b.next()),
    );
    const saved = a.getState();
    const x = a.nextU32();
    const c = new Rng(0);
    c.setState(saved);
    expect(c.nextU32()).toBe(x);
  });

  it('saving the state mid-way through a pair of normal deviates does not change the stream', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    a.normal(); // leaves the second deviate of the pair cached
    b.normal();
    const saved = a.getState();
    expect(saved).toHaveLength(5);
    const rest = [a.normal(), a.normal(), a.next()];
    expect([b.normal(), b.normal(), b.next()]).toEqual(rest); // reading the state disturbed nothing
    const c = new Rng(0);
    c.setState(saved);
    expect([c.normal(), c.normal(), c.next()]).toEqual(rest);
  });

  it('draws uniforms with the right mean and a true permutation', () => {
    const r = new Rng(1);
    const u = r.uniformArray(20000, 0, 1);
    expect(u.reduce((s, v) => s + v, 0) / u.length).toBeCloseTo(0.5, 1);
    const n = r.normalArray(20000);
    const mean = n.reduce((s, v) => s + v, 0) / n.length;
    const variance = n.reduce((s, v) => s + (v - mean) ** 2, 0) / n.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(variance).toBeCloseTo(1, 1);
    expect(Array.from(r.permutation(100)).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 100 }, (_, i) => i),
    );
  });

  it("the README's Python reader reads a bundle and refuses a corrupt one", () => {
    const readme = readFileSync(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8');
    const code = /```python\n([\s\S]*?)```/.exec(readme)![1]!;
    const dir = mkdtempSync(join(tmpdir(), 'contrast-bundle-py-'));
    const [reader, path] = [join(dir, 'read_bundle.py'), join(dir, 'final.bin')];
    writeFileSync(reader, code);
    const w = tf.tensor4d(
      Array.from({ length: 24 }, (_, i) => i),
      [2, 2, 2, 3],
    );
    writeFileAtomic(
      path,
      encodeBundle(
        { 'encoder/stem/conv/w': w, 'strategy/ptr': tf.tensor1d([3], 'int32') },
        { step: 5 },
      ),
    );
    const ok = spawnSync('python3', [reader, path], { encoding: 'utf8' });
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ step: 5, encoder: { 'stem/conv/w': [2, 2, 2, 3] } });
    const bad = readFileSync(path);
    bad[bad.length - 1]! ^= 1;
    writeFileSync(path, bad);
    const refused = spawnSync('python3', [reader, path], { encoding: 'utf8' });
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain('checksum mismatch');
  });
});
