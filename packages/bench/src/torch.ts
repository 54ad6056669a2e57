import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackendError } from '@contrast/core';

/** The PyTorch venv's pins (torch, torchvision, scipy, safetensors, numpy): their only copy. */
const REQUIREMENTS = fileURLToPath(
  new URL('../../../scripts/torch-requirements.txt', import.meta.url),
);
const SETUP = fileURLToPath(new URL('../../../scripts/setup.sh', import.meta.url));

/** The venv scripts/setup.sh builds: CONTRAST_TORCH_VENV, else $CONTRAST_CACHE/torch-venv. */
export function torchVenvDir(): string {
  const cache = process.env.CONTRAST_CACHE ?? join(homedir(), '.cache', 'contrast');
  return process.env.CONTRAST_TORCH_VENV ?? join(cache, 'torch-venv');
}

/**
 * The Python of the PyTorch venv every comparison with PyTorch runs in (the
 * suite's torch export test, `pnpm export-parity`, `pnpm parity`, `pnpm bench
 * --vs-pytorch`). `bash scripts/setup.sh` builds it; when its marker (a copy of
 * scripts/torch-requirements.txt) is missing or differs from the pins, this runs
 * `bash scripts/setup.sh --torch-venv`, which builds it under a lock (two callers
 * at once are safe) and checks every pin imports; about 5 GB with the default
 * wheel's CUDA libraries, which stay unused here.
 * @throws BackendError when the build fails.
 */
export function ensureTorchVenv(log: (line: string) => void = console.error): string {
  const dir = torchVenvDir();
  const python = join(dir, 'bin', 'python');
  const marker = join(dir, '.contrast-requirements.txt');
  const pins = readFileSync(REQUIREMENTS, 'utf8');
  if (existsSync(python) && existsSync(marker) && readFileSync(marker, 'utf8') === pins) {
    return python;
  }
  log(`building the PyTorch venv ${dir} (once): bash scripts/setup.sh --torch-venv`);
  const r = spawnSync('bash', [SETUP, '--torch-venv'], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    throw new BackendError(
      `bash ${SETUP} --torch-venv failed (${r.error?.message ?? `exit ${r.status}`})`,
      {
        hint: `see its output above; CONTRAST_TORCH_VENV points at another venv built from scripts/torch-requirements.txt`,
      },
    );
  }
  return python;
}

/**
 * The cached venv's python when its torch sees a CUDA GPU
 * (`torch.cuda.is_available()`), else undefined. Installs nothing.
 */
export function torchSeesCuda(): string | undefined {
  const python = join(torchVenvDir(), 'bin', 'python');
  if (!existsSync(python)) return undefined;
  const r = spawnSync(
    python,
    ['-c', 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)'],
    {
      stdio: 'ignore',
      timeout: 120_000,
    },
  );
  return r.status === 0 ? python : undefined;
}
