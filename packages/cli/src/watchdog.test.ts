import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const watchdog = join(import.meta.dirname, '..', 'dist', 'watchdog.js');

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

describe('dieWithParent', () => {
  it('ends a child whose main thread never yields once its parent is SIGKILLed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'watchdog-'));
    // the child: watchdog on, then a synchronous loop (no event, timer or signal handler can run)
    writeFileSync(
      join(dir, 'child.mjs'),
      `import { dieWithParent } from ${JSON.stringify(watchdog)};
dieWithParent({ pollMs: 100, graceMs: 500 });
setTimeout(() => { process.send('busy'); for (;;) {} }, 200);`,
    );
    // the parent: forks the child (as BullMQ does), says its pid, waits
    writeFileSync(
      join(dir, 'parent.mjs'),
      `import { fork } from 'node:child_process';
const child = fork(${JSON.stringify(join(dir, 'child.mjs'))});
child.on('message', () => process.stdout.write(child.pid + '\\n'));
setInterval(() => {}, 1000);`,
    );
    const parent = spawn(process.execPath, [join(dir, 'parent.mjs')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const child = Number(
      await new Promise<string>((res) => parent.stdout.once('data', (d: Buffer) => res(String(d)))),
    );
    try {
      await new Promise((r) => setTimeout(r, 300));
      expect(alive(child)).toBe(true); // busy, and staying while its parent lives
      parent.kill('SIGKILL');
      const t0 = performance.now();
      while (alive(child) && performance.now() - t0 < 5000) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(alive(child)).toBe(false);
      expect(performance.now() - t0).toBeLessThan(2000); // poll 0.1 s + grace 0.5 s, with slack
    } finally {
      if (alive(child)) process.kill(child, 'SIGKILL');
    }
  });
});
