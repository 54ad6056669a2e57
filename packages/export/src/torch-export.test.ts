import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExperimentSchema } from '@contrast/core';
import { ENCODER_NAMES } from '@contrast/models';
import { PARITY_ENCODERS, parityLabel } from './parity.js';
import {
  runTorchParity,
  TORCH_PARITY_RTOL,
  torchParityProblems,
  writeTorchParityCase,
  type TorchParityCase,
  type TorchParityResult,
} from './torch-parity.js';

/** The PyTorch venv scripts/setup.sh builds (vitest.config.ts passes its interpreter). */
const python = process.env.CONTRAST_TORCH_PYTHON ?? '';

/** Few images keep the file to seconds; the 3-channel ones are 56x56. */
const IMAGES = 8;

const CASES = PARITY_ENCODERS.flatMap((entry, i) =>
  [false, true].map((head) => ({ entry, head, name: `${i}-${head ? 'head' : 'backbone'}` })),
);

/**
 * Every built-in encoder (PARITY_ENCODERS: each backbone, both ResNet stems,
 * each head) exported as `contrast export` writes it, backbone only and with
 * `--head`, then run through its own generated load.py in the PyTorch venv:
 * `python load.py` as a user runs it, a strict load, and the eval-mode output
 * and features against Contrast's (TORCH_PARITY_RTOL says why that bound).
 */
describe('torch export: the generated load.py, run in PyTorch, gives Contrast eval-mode output', () => {
  let root: string;
  let cases: TorchParityCase[];
  let results: TorchParityResult[];

  beforeAll(() => {
    if (!existsSync(python)) {
      throw new Error(
        `no PyTorch venv at ${python}: bash scripts/setup.sh builds it (or bash scripts/setup.sh --torch-venv alone)`,
      );
    }
    root = mkdtempSync(join(tmpdir(), 'contrast-torch-export-'));
    cases = CASES.map(({ entry, head, name }) =>
      writeTorchParityCase(join(root, name), entry, head, IMAGES),
    );
    results = runTorchParity(
      python,
      cases.map((c) => c.dir),
    );
  }, 300_000);

  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('covers every built-in encoder and head', () => {
    expect(new Set(PARITY_ENCODERS.map((e) => e.encoder))).toEqual(new Set(ENCODER_NAMES));
    const heads = PARITY_ENCODERS.map((e) => ('head' in e ? e.head : 'linear'));
    expect(new Set(heads)).toEqual(
      new Set(ExperimentSchema.shape.model.removeDefault().shape.head.removeDefault().options),
    );
  });

  CASES.forEach(({ entry, head }, i) => {
    const label = `${parityLabel(entry)}, ${head ? 'with the head' : 'backbone only'}`;
    it(`${label}: python load.py runs, loads strictly, matches within ${TORCH_PARITY_RTOL} relative`, () => {
      const c = cases[i]!;
      const r = results[i]!;
      expect(r.folder).toBe(c.dir);
      expect(c.label).toBe(label);
      if (r.error === undefined) {
        console.log(
          `${label}: output max |diff| ${r.output!.toExponential(2)} (max |output| ${c.outputScale.toFixed(2)}), ` +
            `features ${r.features!.toExponential(2)} (max ${c.featuresScale.toFixed(2)})`,
        );
      }
      expect(torchParityProblems(c, r)).toEqual([]);
      expect(r.missing).toEqual([]); // a strict load: no key missing or left over
      expect(r.unexpected).toEqual([]);
    });
  });
});
