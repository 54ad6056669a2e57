import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The PyTorch the comparison runs against (the default PyPI wheel; CPU threads only are used). */
export const TORCH_VERSION = '2.15.0';
/** torchvision for the export checks (0.29.2 is the release that goes with the torch pin). */
export const TORCHVISION_VERSION = '0.29.2';

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
 * A cached venv with torch, created on first use (about 1 minute and 5 GB with
 * the default wheel's CUDA libraries, which stay unused here). Idempotent: a
 * marker file records the installed version. `torchvision: true` also installs
 * torchvision and safetensors into the same venv (the torch pin unchanged).
 */
export function ensureTorchVenv(
  log: (line: string) => void = console.error,
  options: { torchvision?: boolean } = {},
): string {
  const python = ensureTorch(log);
  if (options.torchvision) ensureTorchvision(python, log);
  return python;
}

function ensureTorch(log: (line: string) => void): string {
  const dir = torchVenvDir();
  const python = join(dir, 'bin', 'python');
  const marker = join(dir, `.installed-torch-${TORCH_VERSION}-numpy`);
  if (existsSync(marker) && existsSync(python)) return python;
  mkdirSync(dir, { recursive: true });
  log(`installing torch ${TORCH_VERSION} into ${dir} (once)`);
  if (!existsSync(python)) run('python3', ['-m', 'venv', dir], log);
  run(python, ['-m', 'pip', 'install', '--quiet', '--upgrade', 'pip'], log);
  run(python, ['-m', 'pip', 'install', '--quiet', `torch==${TORCH_VERSION}`, 'numpy'], log);
  run(python, ['-c', 'import torch; torch.randn(2, 2) @ torch.randn(2, 2)'], log);
  writeFileSync(marker, `${new Date().toISOString()}\n`);
  return python;
}

function ensureTorchvision(python: string, log: (line: string) => void): void {
  const dir = torchVenvDir();
  const marker = join(dir, `.installed-torchvision-${TORCHVISION_VERSION}-safetensors`);
  if (existsSync(marker)) return;
  log(`installing torchvision ${TORCHVISION_VERSION} and safetensors into ${dir} (once)`);
  const pins = [`torch==${TORCH_VERSION}`, `torchvision==${TORCHVISION_VERSION}`, 'safetensors'];
  run(python, ['-m', 'pip', 'install', '--quiet', ...pins], log);
  run(python, ['-c', 'import torchvision, safetensors; torchvision.models.resnet18()'], log);
  writeFileSync(marker, `${new Date().toISOString()}\n`);
}
