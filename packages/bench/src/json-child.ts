import { spawnSync } from 'node:child_process';

/**
 * Runs `cmd args` to completion and returns the last line of its stdout that
 * starts with '{', parsed (the bench children print one JSON result last).
 * @throws Error naming `what`, with the exit status and the tail of stderr,
 * when the child fails or prints no JSON line.
 */
export function runJsonChild<T>(cmd: string, args: readonly string[], what: string): T {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  const line = r.stdout
    ?.trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  if (r.status !== 0 || !line) {
    const tail = (r.stderr ?? '').trim().split('\n').slice(-15).join('\n');
    throw new Error(`${what} failed (exit ${r.status ?? r.signal}):\n${tail}`);
  }
  return JSON.parse(line) as T;
}
