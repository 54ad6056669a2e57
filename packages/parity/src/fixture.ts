import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '@contrast/core';
import type { StepRecord } from './record.js';
import type { StepParityOptions } from './step.js';
import type { MethodResult } from './step-parity.js';

/** PyTorch's step records, stored so the suite can compare without PyTorch. */
export interface StepFixture {
  options: StepParityOptions;
  methods: Record<string, { torch: StepRecord[]; torch64: StepRecord[] }>;
}

const round = (x: number) => Number(x.toPrecision(8));
const plain = (r: StepRecord) => ({
  loss: r.loss,
  gradNorms: r.gradNorms,
  bn: Array.from(r.bn, round),
  ...(r.state ? { state: Array.from(r.state, round) } : {}),
});

/**
 * Writes the fixture (8 significant digits: float32 needs fewer than 8). The
 * methods of an existing fixture of the same options that were not run
 * (`--methods`) keep their stored records.
 */
export function writeStepFixture(
  path: string,
  o: StepParityOptions,
  results: MethodResult[],
): void {
  const kept = existsSync(path)
    ? (JSON.parse(readFileSync(path, 'utf8')) as { options: unknown; methods: object })
    : undefined;
  const methods = {
    ...(JSON.stringify(kept?.options) === JSON.stringify(o) ? kept!.methods : {}),
    ...Object.fromEntries(
      results.map((r) => [r.method, { torch: r.torch.map(plain), torch64: r.torch64.map(plain) }]),
    ),
  };
  writeFileAtomic(path, `${JSON.stringify({ options: o, methods })}\n`);
}

/** Reads a fixture back into records. */
export function readStepFixture(path: string): StepFixture {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as {
    options: StepParityOptions;
    methods: Record<
      string,
      Record<
        'torch' | 'torch64',
        (Omit<StepRecord, 'bn' | 'state'> & { bn: number[]; state?: number[] })[]
      >
    >;
  };
  const back = (r: {
    loss: number;
    gradNorms: Record<string, number>;
    bn: number[];
    state?: number[];
  }): StepRecord => ({
    loss: r.loss,
    gradNorms: r.gradNorms,
    bn: Float32Array.from(r.bn),
    ...(r.state ? { state: Float32Array.from(r.state) } : {}),
  });
  return {
    options: raw.options,
    methods: Object.fromEntries(
      Object.entries(raw.methods).map(([k, v]) => [
        k,
        { torch: v.torch.map(back), torch64: v.torch64.map(back) },
      ]),
    ),
  };
}
