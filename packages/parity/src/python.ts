import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ensureTorchVenv } from '@contrast/bench';

/** The folder of the PyTorch side's scripts (python/). */
export function parityScripts(): string {
  return fileURLToPath(new URL('../python/', import.meta.url));
}

/**
 * Runs `python/<script>` with `args` in the cached torch venv (installed
 * on first use), with the same number of threads as ours; its stderr is passed
 * through. Throws with the tail of its output when it fails.
 */
export function runPython(
  script: string,
  args: string[],
  log: (l: string) => void = console.error,
): string {
  const python = ensureTorchVenv(log);
  const r = spawnSync(python, [parityScripts() + script, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
  });
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
    throw new Error(`python ${script} failed (exit ${r.status ?? r.signal}):\n${tail}`);
  }
  return r.stdout;
}
