import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RunLockedError } from '@contrast/core';
import { lockRun, RUN_LOCK_FILE, runLockHolder } from './run-lock.js';

const dist = join(import.meta.dirname, '..', 'dist', 'index.js');

/** Another process that takes the folder's lock and holds it until killed. */
async function holder(dir: string): Promise<ChildProcess> {
  const script = `import 'reflect-metadata'; import { lockRun } from ${JSON.stringify(dist)};
lockRun(${JSON.stringify(dir)}); process.stdout.write('locked\\n'); setInterval(() => {}, 1000);`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: join(import.meta.dirname, '..', '..', '..'), // where reflect-metadata resolves
  });
  await new Promise<void>((res, rej) => {
    proc.stdout!.on('data', () => res());
    proc.on('exit', (code) => rej(new Error(`holder exited ${code}`)));
  });
  return proc;
}

const exited = (p: ChildProcess) =>
  new Promise<void>((res) => (p.exitCode !== null || p.signalCode ? res() : p.on('exit', res)));

describe('lockRun (one writer per run folder)', () => {
  const procs: ChildProcess[] = [];
  afterEach(() => {
    for (const p of procs.splice(0)) p.kill('SIGKILL');
  });

  it('refuses a second writer while the holder lives, naming it; takes over once it was SIGKILLed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-lock-'));
    const p = await holder(dir);
    procs.push(p);
    const e = (() => {
      try {
        lockRun(dir);
      } catch (x) {
        return x;
      }
    })() as RunLockedError;
    expect(e).toBeInstanceOf(RunLockedError);
    expect(e.code).toBe('CONTRAST_RUN_LOCKED');
    expect(e.holder.pid).toBe(p.pid);
    expect(e.message).toContain(`process ${p.pid} on ${hostname()}`);
    expect(e.hint).toContain(`kill ${p.pid}`);

    p.kill('SIGKILL'); // no exit handler runs: run.lock stays behind
    await exited(p);
    expect(runLockHolder(dir)?.pid).toBe(p.pid);
    const lock = lockRun(dir);
    expect(runLockHolder(dir)?.pid).toBe(process.pid);
    lock.release();
    expect(existsSync(join(dir, RUN_LOCK_FILE))).toBe(false);
    lockRun(dir).release(); // free again
  });

  it('a lock whose pid now belongs to a later process (pid reuse) is stale', () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-lock-'));
    const mine = lockRun(dir);
    const held = JSON.parse(readFileSync(mine.file, 'utf8'));
    expect(() => lockRun(dir)).toThrow(RunLockedError); // this very process holds it
    // the same pid with another start time: a process that died, its pid taken by this one
    writeFileSync(
      mine.file,
      JSON.stringify({ ...held, procStart: String(Number(held.procStart) - 1) }),
    );
    const again = lockRun(dir);
    expect(runLockHolder(dir)?.acquired).toBe(again.holder.acquired);
    mine.release(); // not its lock any more: left in place
    expect(runLockHolder(dir)?.acquired).toBe(again.holder.acquired);
    again.release();
    expect(runLockHolder(dir)).toBeUndefined();
  });

  it("another host's lock holds while refreshed and is taken over after staleMs without a heartbeat", () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-lock-'));
    const file = join(dir, RUN_LOCK_FILE);
    writeFileSync(
      file,
      JSON.stringify({ pid: 4242, host: 'elsewhere', acquired: '2026-01-01T00:00:00.000Z' }),
    );
    const e = (() => {
      try {
        lockRun(dir, { staleMs: 60_000 });
      } catch (x) {
        return x as RunLockedError;
      }
    })();
    expect(e?.code).toBe('CONTRAST_RUN_LOCKED');
    expect(e?.hint).toContain(`delete ${file}`);
    const old = new Date(Date.now() - 61_000);
    utimesSync(file, old, old);
    const lock = lockRun(dir, { staleMs: 60_000 });
    expect(runLockHolder(dir)?.host).toBe(hostname());
    lock.release();
  });
});
