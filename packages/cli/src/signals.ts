import { signalExitCode } from './exit-codes.js';

/** What a process manager, scheduler or terminal sends to stop a program. */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * How a long-running command stops (state machine):
 *
 *   running --first signal or request()--> stopping: `signal` aborts (reason =
 *   the signal's name), `onStop` runs once; the command finishes or abandons its
 *   step, checkpoints, writes its state and exits with `exitCode` (128 + n).
 *   stopping --another OS signal--> `aborting` aborts and `onAbort` runs, then
 *   the process exits at once with that signal's code.
 *
 * `request()` is a stop that did not come from an OS signal (a parent process
 * asking over IPC, a job cancelled by its worker): it never counts as the first
 * of two signals, so a child told both by the terminal and by its parent stops
 * cleanly instead of aborting.
 */
export class StopSignals {
  private readonly controller = new AbortController();
  private readonly abortController = new AbortController();
  private stopping: NodeJS.Signals | undefined;
  private signalled = false;

  constructor(
    private readonly hooks: {
      /** The first stop: say what happens now. */
      onStop?: (signal: NodeJS.Signals) => void;
      /** A second signal, just before the process exits. */
      onAbort?: (signal: NodeJS.Signals) => void;
    } = {},
    private readonly exit: (code: number) => void = (code) => process.exit(code),
  ) {}

  /** Aborted on the first stop; its reason is the signal's name. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Aborted on a second signal, just before the process exits (kill what cannot stop cleanly). */
  get aborting(): AbortSignal {
    return this.abortController.signal;
  }

  get requested(): boolean {
    return this.stopping !== undefined;
  }

  /** 128 + n of the signal that stopped the command (130 if none did). */
  get exitCode(): number {
    return signalExitCode(this.stopping ?? 'SIGINT');
  }

  install(): this {
    for (const s of STOP_SIGNALS) process.on(s, this.onSignal);
    return this;
  }

  dispose(): void {
    for (const s of STOP_SIGNALS) process.off(s, this.onSignal);
  }

  /** A stop that is not an OS signal (see the class comment). */
  request(signal: NodeJS.Signals): void {
    if (this.stopping) return;
    this.stopping = signal;
    this.controller.abort(signal);
    this.hooks.onStop?.(signal);
  }

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (this.signalled) {
      this.abortController.abort(signal);
      this.hooks.onAbort?.(signal);
      this.exit(signalExitCode(signal));
      return;
    }
    this.signalled = true;
    this.request(signal);
  };
}

/** "Ctrl-C" for SIGINT, the signal's name otherwise: what to do again to abort. */
export const againToAbort = (signal: NodeJS.Signals) =>
  signal === 'SIGINT' ? 'Ctrl-C again to abort' : `${signal} again to abort`;

/** The IPC message a parent (a study's, `--workers`' launcher) sends its children to stop them cleanly. */
export interface StopMessage {
  cmd: 'contrast:stop';
  signal: NodeJS.Signals;
}

export const isStopMessage = (m: unknown): m is StopMessage =>
  typeof m === 'object' && m !== null && (m as { cmd?: unknown }).cmd === 'contrast:stop';
