import { randomUUID } from 'node:crypto';
import {
  existsSync,
  linkSync,
  readFileSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { RunDirError, RunLockedError } from '@contrast/core';

/**
 * One writer per run folder. A process that trains into a folder (`train`,
 * `train --resume`, a study's or a queue worker's configuration) first takes
 * `<run>/run.lock`, a JSON file naming its holder; a second process is refused
 * with RunLockedError (CONTRAST_RUN_LOCKED) while that holder lives.
 *
 * Why not proper-lockfile: it records no owner (the refusal could not name the
 * process to stop) and judges staleness by mtime alone, so a writer killed with
 * SIGKILL would block its own retry on the same machine until the stale time
 * passed. Here the lock is:
 * - taken atomically: the holder is written to a private file, then hard-linked
 *   to run.lock (link fails with EEXIST if it exists, also on NFS), so nobody
 *   ever reads a half-written holder;
 * - stale on this host as soon as its process is gone (no such pid, or the pid
 *   now belongs to a process started later, or the machine rebooted since);
 * - stale from another host only when its mtime, which the holder refreshes
 *   every `heartbeatMs`, is older than `staleMs` (a machine that went away);
 * - released on release() and on process.exit; after a SIGKILL it stays and
 *   is stale by the rules above.
 * A stale lock is taken over: re-read, removed only if unchanged, taken anew.
 */
export const RUN_LOCK_FILE = 'run.lock';

/** Who holds a run folder's lock (the contents of run.lock). */
export interface RunLockHolder {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  acquired: string;
  /** A random id of this taking of the lock (two takings in one millisecond differ). */
  id?: string;
  /** Linux: the kernel's boot id and the process's start time in clock ticks (guards pid reuse). */
  boot?: string;
  procStart?: string;
}

export interface RunLockOptions {
  /** A lock from another host is stale when not refreshed for this long (ms, default 60 s). */
  staleMs?: number;
  /** How often the holder refreshes its lock's mtime (ms, default 10 s). */
  heartbeatMs?: number;
}

/** A held run-folder lock. */
export class RunLock {
  private readonly heartbeat: NodeJS.Timeout;
  private released = false;
  private readonly onExit = () => this.release();

  constructor(
    readonly runPath: string,
    readonly holder: RunLockHolder,
    heartbeatMs: number,
  ) {
    this.heartbeat = setInterval(() => {
      const now = new Date();
      try {
        utimesSync(this.file, now, now);
      } catch {
        /* removed by hand: nothing to refresh */
      }
    }, heartbeatMs).unref();
    process.on('exit', this.onExit);
  }

  get file(): string {
    return join(this.runPath, RUN_LOCK_FILE);
  }

  /** Removes run.lock if it is still this lock (idempotent). */
  release(): void {
    if (this.released) return;
    this.released = true;
    clearInterval(this.heartbeat);
    process.off('exit', this.onExit);
    const now = readHolder(this.file);
    if (
      now &&
      now.pid === this.holder.pid &&
      now.acquired === this.holder.acquired &&
      now.id === this.holder.id
    ) {
      unlinkSync(this.file);
    }
  }
}

/**
 * Takes `<runPath>/run.lock` (the folder must exist). Throws RunLockedError
 * (CONTRAST_RUN_LOCKED, naming the holder's pid, host and start) when a live
 * process holds it, RunDirError when the folder cannot be written.
 */
export function lockRun(runPath: string, options: RunLockOptions = {}): RunLock {
  const file = join(runPath, RUN_LOCK_FILE);
  const holder = selfHolder();
  for (let attempt = 0; attempt < 3; attempt++) {
    if (tryCreate(file, holder)) return new RunLock(runPath, holder, options.heartbeatMs ?? 10_000);
    const held = readHolder(file);
    if (held === undefined) continue; // released meanwhile
    if (!isStale(file, held, options.staleMs ?? 60_000)) throw lockedError(runPath, held);
    // taken over only if unchanged since judged stale: never remove a fresh holder's lock
    const again = readHolder(file);
    if (again && again.pid === held.pid && again.acquired === held.acquired && again.id === held.id)
      unlinkSync(file);
  }
  throw new RunLockedError(
    runPath,
    readHolder(file) ?? { pid: 0, host: '?', acquired: '?' },
    `${runPath}: its lock changed hands three times while being taken`,
    { hint: 'another process is starting in this folder: let it run' },
  );
}

/** The holder recorded in a run folder's lock, or undefined when it is not locked. */
export function runLockHolder(runPath: string): RunLockHolder | undefined {
  return readHolder(join(runPath, RUN_LOCK_FILE));
}

function tryCreate(file: string, holder: RunLockHolder): boolean {
  const tmp = `${file}.${holder.pid}.${Math.random().toString(36).slice(2)}`;
  try {
    writeFileSync(tmp, `${JSON.stringify(holder)}\n`);
    linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new RunDirError(`cannot lock ${file}: ${(e as Error).message}`, { cause: e });
  } finally {
    if (existsSync(tmp)) unlinkSync(tmp);
  }
}

function readHolder(file: string): RunLockHolder | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as RunLockHolder;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    // unreadable (edited by hand, a disk error): judged by its mtime like a remote holder
    return { pid: 0, host: '', acquired: '' };
  }
}

function isStale(file: string, held: RunLockHolder, staleMs: number): boolean {
  if (held.host === hostname()) return !processAlive(held);
  try {
    return Date.now() - statSync(file).mtimeMs > staleMs;
  } catch {
    return true; // gone meanwhile
  }
}

/** Whether the process that took a lock on this host is still running. */
function processAlive(held: RunLockHolder): boolean {
  if (held.boot && held.boot !== bootId()) return false; // rebooted since
  try {
    process.kill(held.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false; // EPERM: alive, not ours
  }
  const stat = procStat(held.pid);
  if (!stat) return true; // no /proc: the pid answered, take it as the holder
  // a zombie (killed, not yet reaped by its parent) writes nothing more; a later start time
  // means the pid was reused
  return !(
    stat.state === 'Z' ||
    stat.state === 'X' ||
    (held.procStart && stat.start !== held.procStart)
  );
}

function lockedError(runPath: string, held: RunLockHolder): RunLockedError {
  const here = held.host === hostname();
  return new RunLockedError(
    runPath,
    held,
    `${runPath} is being written by process ${held.pid} on ${held.host} (since ${held.acquired}); a second writer is refused`,
    {
      hint: here
        ? `wait for it to finish, or stop it (kill ${held.pid}) and run again: it resumes from the last checkpoint`
        : `wait for it to finish; if ${held.host} went away, the lock is taken over once not refreshed for a minute (or delete ${join(runPath, RUN_LOCK_FILE)})`,
    },
  );
}

function selfHolder(): RunLockHolder {
  const boot = bootId();
  const start = procStat(process.pid)?.start;
  return {
    pid: process.pid,
    host: hostname(),
    acquired: new Date().toISOString(),
    id: randomUUID(),
    ...(boot ? { boot } : {}),
    ...(start ? { procStart: start } : {}),
  };
}

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** /proc/<pid>/stat's state (field 3) and start time after boot (field 22, clock ticks). */
function procStat(pid: number): { state: string; start: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // after `(comm)`, which may hold spaces
    return { state: fields[0]!, start: fields[19]! };
  } catch {
    return undefined;
  }
}
