#!/usr/bin/env node
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@contrast/backend';
import {
  PARITY_ENCODERS,
  runTorchParity,
  torchParityProblems,
  writeTorchParityCase,
} from '@contrast/export';
import { ensureTorchVenv } from '@contrast/bench';

/**
 * The torch side of export parity on 256 Fashion-MNIST test images (the suite's
 * torch-export.test.ts runs the same check on 8): every PARITY_ENCODERS entry
 * exported as `contrast export` writes it, backbone only and with the head, BN
 * statistics randomised, loaded strictly through its generated `load.py` in
 * the PyTorch venv, must give Contrast's eval-mode output and features within
 * TORCH_PARITY_RTOL. Prints one line per export and exits 1 when a check fails.
 */
async function main(): Promise<number> {
  await initBackend('tensorflow');
  const python = ensureTorchVenv();
  const root = mkdtempSync(join(tmpdir(), 'contrast-export-parity-'));
  try {
    const cases = PARITY_ENCODERS.flatMap((entry, i) =>
      [false, true].map((head) =>
        writeTorchParityCase(join(root, `${i}-${head ? 'head' : 'backbone'}`), entry, head, 256),
      ),
    );
    const results = runTorchParity(
      python,
      cases.map((c) => c.dir),
    );
    let failed = 0;
    results.forEach((r, i) => {
      const c = cases[i]!;
      const problems = torchParityProblems(c, r);
      if (problems.length) failed++;
      const measured =
        r.error === undefined
          ? `output max |diff| ${r.output!.toExponential(2)} (max |output| ${c.outputScale.toFixed(2)}), ` +
            `features ${r.features!.toExponential(2)} (max ${c.featuresScale.toFixed(2)}), load.py printed ${r.main}`
          : '';
      const line = [measured, ...problems].filter(Boolean).join('\n     ');
      process.stdout.write(`${problems.length ? 'FAIL' : 'ok  '} ${c.label.padEnd(50)} ${line}\n`);
    });
    return failed ? 1 : 0;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
