import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { encodeBundle, StateError } from '@contrast/core';
import { checkpointName, listCheckpoints, loadCheckpoint, writeCheckpoint } from './checkpoint.js';

const bundle = (step: number) => {
  const t = tf.tensor1d([step, step + 0.5]);
  const bytes = encodeBundle({ w: t }, { step });
  t.dispose();
  return bytes;
};

function stateError(f: () => unknown): StateError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(StateError);
    return e as StateError;
  }
  throw new Error('expected a StateError');
}

describe('checkpoints', () => {
  it('keeps the newest `keep` and loads the newest', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-ckpt-'));
    for (const step of [5, 10, 15, 16]) writeCheckpoint(dir, step, bundle(step), 2);
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([16, 15]);
    expect(readdirSync(dir).sort()).toEqual([checkpointName(15), checkpointName(16)]); // no temp files left
    const { step, bundle: b } = loadCheckpoint(dir);
    expect(step).toBe(16);
    expect(b.values.step).toBe(16);
    expect(Array.from(b.tensors.w!.dataSync())).toEqual([16, 16.5]);
    tf.dispose(Object.values(b.tensors));
  });

  it('refuses a truncated newest checkpoint by name; falls back only when asked', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-ckpt-'));
    writeCheckpoint(dir, 10, bundle(10), 3);
    const newest = writeCheckpoint(dir, 20, bundle(20), 3);
    const full = readFileSync(newest);
    writeFileSync(newest, full.subarray(0, full.length - 7)); // truncated
    const e = stateError(() => loadCheckpoint(dir));
    expect(e.code).toBe('CONTRAST_STATE');
    expect(e.message).toContain(newest);
    expect(e.message).toContain('--fallback');
    const warnings: string[] = [];
    const r = loadCheckpoint(dir, { fallback: true, warn: (l) => warnings.push(l) });
    expect(r.step).toBe(10);
    expect(warnings.join('\n')).toContain(newest);
    tf.dispose(Object.values(r.bundle.tensors));

    // a flipped byte in the payload is caught by the checksum
    const flipped = Buffer.from(full);
    flipped[flipped.length - 1]! ^= 0xff;
    writeFileSync(newest, flipped);
    expect(stateError(() => loadCheckpoint(dir)).message).toContain('checksum mismatch');
  });

  it('a full disk fails the write with ENOSPC and leaves the previous checkpoint intact', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-ckpt-'));
    const previous = writeCheckpoint(dir, 10, bundle(10), 1);
    const before = readFileSync(previous);
    // the temp file the next write uses, routed to /dev/full: every write returns ENOSPC
    symlinkSync('/dev/full', join(dir, `.${checkpointName(20)}.tmp-${process.pid}`));
    const e = stateError(() => writeCheckpoint(dir, 20, bundle(20), 1));
    expect(e.message).toContain('ENOSPC');
    expect(e.message).toContain('previous checkpoints are intact');
    expect(existsSync(join(dir, checkpointName(20)))).toBe(false);
    expect(readFileSync(previous).equals(before)).toBe(true);
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([10]); // not pruned by the failed write
    const r = loadCheckpoint(dir);
    expect(r.step).toBe(10);
    tf.dispose(Object.values(r.bundle.tensors));
  });

  it('says when there is nothing to resume from', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-ckpt-'));
    expect(stateError(() => loadCheckpoint(dir)).message).toContain('no checkpoint');
  });
});
