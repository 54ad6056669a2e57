import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { join } from 'node:path';
import { vi } from 'vitest';
import { main } from '@contrast/cli';

/** Runs the CLI in-process; returns its exit code and what it wrote to stdout and stderr. */
export async function cli(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
    stdout += String(c);
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    stderr += String(c);
    return true;
  });
  try {
    return { code: await main(args), stdout, stderr };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

/** The built command, as users run it. */
export const BIN = join(import.meta.dirname, '..', 'packages/cli/dist/bin.js');

/** A `contrast` process: its exit (code, or 128 + n when a signal ended it), and its output so far. */
export interface CliProcess {
  proc: ChildProcess;
  done: Promise<number>;
  stdout: () => string;
  stderr: () => string;
}

/** Runs the built CLI as a child process (MLFLOW_TRACKING_URI cleared unless given). */
export function spawnCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): CliProcess {
  const proc = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? join(import.meta.dirname, '..'),
    env: { ...process.env, MLFLOW_TRACKING_URI: '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<number>((resolve) =>
    proc.on('close', (code, signal) =>
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)),
    ),
  );
  return { proc, done, stdout: () => out, stderr: () => err };
}

/** Polls `ready` every 20 ms until it holds (true) or `ms` pass (false). */
export async function waitFor(ready: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (ready()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return ready();
}
