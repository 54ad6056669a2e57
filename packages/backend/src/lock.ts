import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { BackendError } from '@contrast/core';

/**
 * Runs `fn` holding an exclusive flock(2) on `lockPath` (created if absent), the
 * same lock `flock(1)` takes in scripts/setup.sh, so set-ups, `contrast setup`
 * and tests on one machine build a cache one at a time.
 *
 * Node has no flock, so util-linux's `flock` takes it on a descriptor this
 * process opened and hands to the child as fd 3: the lock belongs to the shared
 * open file, so it stays held after the child exits and is released when this
 * process closes the descriptor, or dies (a killed set-up never leaves a stale
 * lock). Node opens files close-on-exec, so no other child inherits it.
 * Without flock(1) (not Linux) `fn` runs unlocked, with a warning.
 * @throws BackendError when flock(1) fails for another reason.
 */
export function withFileLock<T>(lockPath: string, fn: () => T, log: (line: string) => void): T {
  mkdirSync(dirname(lockPath), { recursive: true });
  const fd = openSync(lockPath, 'a');
  try {
    const flock = (args: string[]) =>
      spawnSync('flock', [...args, '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let r = flock(['-x', '-n']);
    if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
      log(
        `flock(1) not found: building without the lock ${lockPath}; never run two set-ups at once`,
      );
      return fn();
    }
    if (r.status === 1) {
      log(`waiting for another set-up to finish (lock ${lockPath})`);
      r = flock(['-x']);
    }
    if (r.status !== 0) {
      throw new BackendError(
        `could not lock ${lockPath}: ${String(r.stderr ?? r.error?.message ?? r.status).trim()}`,
        { hint: 'check that the cache folder is writable (CONTRAST_CACHE)' },
      );
    }
    return fn();
  } finally {
    closeSync(fd); // releases the lock
  }
}
