import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readStepFixture, writeStepFixture } from './fixture.js';
import type { MethodResult } from './step-parity.js';
import { TINY_STEP_OPTIONS } from './step.js';

const dir = mkdtempSync(join(tmpdir(), 'contrast-fixture-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A result whose PyTorch records hold one step of loss `loss`. */
const result = (method: string, loss: number) =>
  ({
    method,
    torch: [{ loss, gradNorms: { stem: 1 }, bn: Float32Array.from([0.5]) }],
    torch64: [{ loss, gradNorms: { stem: 1 }, bn: Float32Array.from([0.5]) }],
  }) as unknown as MethodResult;

describe('writeStepFixture', () => {
  it("keeps the methods not run (--methods) of a fixture of the same options, replaces the run ones'", () => {
    const path = join(dir, 'a.json');
    writeStepFixture(path, TINY_STEP_OPTIONS, [result('a', 1), result('b', 2)]);
    writeStepFixture(path, TINY_STEP_OPTIONS, [result('b', 3)]);
    const f = readStepFixture(path);
    expect(Object.keys(f.methods)).toEqual(['a', 'b']);
    expect(f.methods.a!.torch[0]!.loss).toBe(1);
    expect(f.methods.b!.torch[0]!.loss).toBe(3);
  });

  it('starts afresh when the options differ (the stored records are of another model)', () => {
    const path = join(dir, 'b.json');
    writeStepFixture(path, TINY_STEP_OPTIONS, [result('a', 1)]);
    writeStepFixture(path, { ...TINY_STEP_OPTIONS, steps: 4 }, [result('b', 2)]);
    expect(Object.keys(readStepFixture(path).methods)).toEqual(['b']);
  });
});
