import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readBundle, StateError, writeFileAtomic, type DecodedBundle } from '@contrast/core';

/**
 * Checkpoint files `<run>/checkpoints/step-00000123.ckpt`: one tensor bundle
 * (SHA-256 of the payload in its header) per save, written to a temp file and
 * renamed, so a crash or a full disk never leaves a half-written checkpoint
 * under a real name. Older ones are pruned only after a new one is in place.
 */
const PATTERN = /^step-(\d{8,})\.ckpt$/;

export function checkpointDir(runPath: string): string {
  return join(runPath, 'checkpoints');
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}.ckpt`;
}

/** Checkpoints in `dir`, newest (highest step) first. */
export function listCheckpoints(dir: string): { path: string; step: number }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => ({ f, m: PATTERN.exec(f) }))
    .filter((x) => x.m)
    .map((x) => ({ path: join(dir, x.f), step: Number(x.m![1]) }))
    .sort((a, b) => b.step - a.step);
}

/** Writes a checkpoint atomically, then keeps only the `keep` newest. Returns its path. */
export function writeCheckpoint(
  dir: string,
  step: number,
  bytes: Uint8Array,
  keep: number,
): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, checkpointName(step));
  try {
    writeFileAtomic(path, bytes);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new StateError(
      `could not write checkpoint ${path} (${code ?? (e as Error).message}); the previous checkpoints are intact`,
      {
        hint:
          code === 'ENOSPC'
            ? 'free disk space; training can resume from the last checkpoint'
            : undefined,
        cause: e,
      },
    );
  }
  for (const old of listCheckpoints(dir).slice(Math.max(1, keep)))
    rmSync(old.path, { force: true });
  return path;
}

/**
 * The newest checkpoint that verifies. A corrupt or truncated one is refused
 * with its file name; only with `fallback` does it move on to an older one
 * (and say so through `warn`).
 */
export function loadCheckpoint(
  dir: string,
  options: { fallback?: boolean; warn?: (line: string) => void } = {},
): { path: string; step: number; bundle: DecodedBundle } {
  const all = listCheckpoints(dir);
  if (all.length === 0) {
    throw new StateError(`no checkpoint in ${dir}`, {
      hint: 'the run stopped before its first checkpoint; start it again (set checkpoint.every to save more often)',
    });
  }
  let firstError: StateError | undefined;
  for (const c of all) {
    try {
      const bundle = readBundle(c.path);
      if (firstError) options.warn?.(`resuming from the older checkpoint ${c.path}`);
      return { ...c, bundle };
    } catch (e) {
      if (!(e instanceof StateError)) throw e;
      if (!options.fallback) {
        throw new StateError(`checkpoint ${c.path} is unusable: ${e.message.split('\n')[0]}`, {
          hint: 'resume with --fallback to use the previous checkpoint instead',
          cause: e,
        });
      }
      options.warn?.(`skipping unusable checkpoint ${c.path}: ${e.message.split('\n')[0]}`);
      firstError ??= e;
    }
  }
  throw new StateError(`no usable checkpoint in ${dir}: every one failed verification`, {
    cause: firstError,
  });
}
