import { describe, expect, it } from 'vitest';
import { ExitCode, exitCodeFor, signalExitCode } from './exit-codes.js';
import { StopSignals, STOP_SIGNALS } from './signals.js';
import { ConfigError, DivergedError, UsageError } from '@contrast/core';

/** Delivers a signal to this process's listeners, as Node does when the OS sends it. */
const deliver = (s: NodeJS.Signals) => process.emit(s, s);

describe('StopSignals: first signal stops cleanly, a second aborts', () => {
  it('conventional codes: 128 + the signal number', () => {
    expect(STOP_SIGNALS.map(signalExitCode)).toEqual([130, 143, 129]);
  });

  it('running -> stopping on the first signal; exit with the code of the second', () => {
    const exits: number[] = [];
    const seen: string[] = [];
    const stop = new StopSignals(
      { onStop: (s) => seen.push(`stop ${s}`), onAbort: (s) => seen.push(`abort ${s}`) },
      (code) => exits.push(code),
    ).install();
    try {
      expect([stop.requested, stop.signal.aborted, stop.exitCode]).toEqual([false, false, 130]);
      deliver('SIGTERM');
      expect([stop.requested, stop.signal.aborted, stop.signal.reason]).toEqual([
        true,
        true,
        'SIGTERM',
      ]);
      expect(stop.exitCode).toBe(143);
      expect(exits).toEqual([]); // the first signal never exits: the command checkpoints first
      expect(stop.aborting.aborted).toBe(false);
      deliver('SIGHUP');
      expect(stop.aborting.aborted).toBe(true);
      expect(exits).toEqual([129]);
      expect(seen).toEqual(['stop SIGTERM', 'abort SIGHUP']);
    } finally {
      stop.dispose();
    }
    expect(STOP_SIGNALS.map((s) => process.listenerCount(s))).toEqual([0, 0, 0]);
  });

  it('a request (IPC) stops without counting as a signal: the next signal does not abort', () => {
    const exits: number[] = [];
    const stop = new StopSignals({}, (code) => exits.push(code)).install();
    try {
      stop.request('SIGINT');
      expect([stop.requested, stop.exitCode]).toEqual([true, 130]);
      deliver('SIGINT'); // the terminal's Ctrl-C that reached the child too
      expect(exits).toEqual([]);
      deliver('SIGINT'); // pressed again: abort
      expect(exits).toEqual([130]);
    } finally {
      stop.dispose();
    }
  });
});

describe('exit codes', () => {
  it('diverged 3, coded input errors 2, anything else is unexpected', () => {
    expect(exitCodeFor(new DivergedError(7, Number.NaN))).toBe(ExitCode.diverged);
    expect(exitCodeFor(new ConfigError('optim.lr', 'must be > 0'))).toBe(ExitCode.usage);
    expect(exitCodeFor(new UsageError('unknown option'))).toBe(2);
    expect(exitCodeFor(new TypeError('bug'))).toBeUndefined();
    expect(new DivergedError(7, Infinity).message).toContain('the loss became Infinity at step 7');
  });
});
