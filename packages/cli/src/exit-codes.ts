import { constants } from 'node:os';
import { DistributedError, DivergedError, isContrastError } from '@contrast/core/errors';

/**
 * The command's exit statuses (documented in the README):
 * 0 done; 1 done, but something failed (a doctor check, a study configuration)
 * or an internal error; 2 the command line or its input needs fixing (usage,
 * config, data, run folder, tracking: every coded ContrastError); 3 training
 * diverged (the loss became NaN or Infinity); 4 a data-parallel worker group
 * failed (a peer lost, a collective timed out: resume from the last
 * checkpoint); 128 + n stopped by signal n
 * (129 SIGHUP, 130 SIGINT, 143 SIGTERM) after checkpointing.
 */
export const ExitCode = { ok: 0, failed: 1, usage: 2, diverged: 3, distributed: 4 } as const;

/** The conventional status of a process stopped by a signal: 128 + its number. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

/** The exit status for an error the command reports, or undefined for an unexpected one. */
export function exitCodeFor(e: unknown): number | undefined {
  if (e instanceof DivergedError) return ExitCode.diverged;
  if (e instanceof DistributedError) return ExitCode.distributed;
  if (isContrastError(e)) return ExitCode.usage;
  return undefined;
}
