import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The PyTorch the comparison runs against (the default PyPI wheel; CPU threads only are used). */
export const TORCH_VERSION = '2.15.0';
/** torchvision built for that torch (the parity harness's transforms and ResNet conventions). */
export const TORCHVISION_VERSION = '0.29.2';
/** scipy for the parity reports' two-sample tests. */
export const SCIPY_VERSION = '1.17.1';

export function torchVenvDir(): string {
  return process.env.CONTRAST_TORCH_VENV ?? join(homedir(), '.cache', 'contrast', 'torch-venv');
}

function run(cmd: string, args: string[], log: (line: string) => void): void {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    throw new Error(
      `'${cmd} ${args.join(' ')}' failed (${r.error?.message ?? `exit ${r.status}`}); ` +
        `remove ${torchVenvDir()} and retry, or point CONTRAST_TORCH_VENV at a venv with torch installed`,
    );
  }
}

/**
 * A cached venv with torch, torchvision, numpy and scipy, created on first use
 * (about 1 minute and 5 GB with the default wheel's CUDA libraries, which stay
 * unused here). Idempotent: a marker file records the installed versions; a venv
 * made by an earlier version of this function gets the missing packages added.
 */
export function ensureTorchVenv(log: (line: string) => void = console.error): string {
  const dir = torchVenvDir();
  const python = join(dir, 'bin', 'python');
  const marker = join(
    dir,
    `.installed-torch-${TORCH_VERSION}-torchvision-${TORCHVISION_VERSION}-scipy-${SCIPY_VERSION}`,
  );
  if (existsSync(marker) && existsSync(python)) return python;
  mkdirSync(dir, { recursive: true });
  log(
    `installing torch ${TORCH_VERSION}, torchvision ${TORCHVISION_VERSION} and scipy into ${dir} (once)`,
  );
  if (!existsSync(python)) run('python3', ['-m', 'venv', dir], log);
  run(python, ['-m', 'pip', 'install', '--quiet', '--upgrade', 'pip'], log);
  run(
    python,
    [
      '-m',
      'pip',
      'install',
      '--quiet',
      `torch==${TORCH_VERSION}`,
      `torchvision==${TORCHVISION_VERSION}`,
      `scipy==${SCIPY_VERSION}`,
      'numpy',
    ],
    log,
  );
  run(
    python,
    [
      '-c',
      'import torch, torchvision, scipy.stats; torch.randn(2, 2) @ torch.randn(2, 2); torchvision.transforms.ColorJitter(0.4)',
    ],
    log,
  );
  writeFileSync(marker, `${new Date().toISOString()}\n`);
  return python;
}

/** safetensors for the export checks (reading Contrast's torch export the way users do). */
export const SAFETENSORS_VERSION = '0.8.0';

/**
 * The cached torch venv plus safetensors, installed once into the same venv
 * (torch and torchvision pinned in the same pip call so nothing moves).
 */
export function ensureTorchVenvWithSafetensors(
  log: (line: string) => void = console.error,
): string {
  const python = ensureTorchVenv(log);
  const marker = join(torchVenvDir(), `.installed-safetensors-${SAFETENSORS_VERSION}`);
  if (existsSync(marker)) return python;
  log(`installing safetensors ${SAFETENSORS_VERSION} into ${torchVenvDir()} (once)`);
  const pins = [`torch==${TORCH_VERSION}`, `torchvision==${TORCHVISION_VERSION}`];
  run(
    python,
    ['-m', 'pip', 'install', '--quiet', ...pins, `safetensors==${SAFETENSORS_VERSION}`],
    log,
  );
  run(python, ['-c', 'import safetensors.torch'], log);
  writeFileSync(marker, `${new Date().toISOString()}\n`);
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
