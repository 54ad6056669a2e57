import { closeSync, openSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * Whether TensorFlow's start-up lines should be shown: only when the user asked
 * for all of TensorFlow's log (TF_CPP_MIN_LOG_LEVEL=0, which `--verbose` sets).
 */
export function tensorflowBannerWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.TF_CPP_MIN_LOG_LEVEL === '0';
}

/** dup(2) and dup2(2) of the C library: they return the new descriptor, or -1. */
interface Dup {
  dup(fd: number): number;
  dup2(fd: number, to: number): number;
}

let dupCalls: Dup | null | undefined;

/**
 * dup and dup2 through koffi (an FFI with prebuilt binaries), looked up in the
 * process's own symbols (dlopen(NULL): the C library Node runs on, glibc, musl or
 * macOS's); null on Windows or where koffi cannot load.
 */
function dupFunctions(): Dup | null {
  if (dupCalls !== undefined) return dupCalls;
  dupCalls = null;
  if (process.platform === 'win32') return null;
  try {
    const koffi = require('koffi') as typeof import('koffi');
    const lib = koffi.load(null);
    dupCalls = {
      dup: lib.func('int dup(int fd)') as Dup['dup'],
      dup2: lib.func('int dup2(int fd, int to)') as Dup['dup2'],
    };
  } catch {
    // no FFI here: stderr is left alone
  }
  return dupCalls;
}

/**
 * Runs `load` with the process's file descriptor 2 pointed at /dev/null, then
 * points it back at the very same open file description. For loading the native
 * TensorFlow library: its oneDNN notice and absl's "All log messages before
 * absl::InitializeLog() ..." are written to fd 2 by C++ static initialisers,
 * before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so that variable cannot hide
 * them (TF 2.21, measured).
 *
 * The swap is dup(2) + dup2(2) (Node has neither; koffi calls the C library's):
 * the saved descriptor shares the caller's file offset and flags, so a log that
 * others write too (`{ ...; contrast ...; echo done; } 2> log`, SLURM's
 * `--error`, `2>&1`) continues exactly after Contrast's last line. Re-opening
 * /proc/self/fd/2 instead would make a second description whose appends the
 * shell's offset never sees: the next writer would overwrite Contrast's lines.
 * Where dup/dup2 are unavailable (Windows, or koffi failing to load), `load` runs
 * unchanged and TensorFlow's lines show. Errors thrown by `load` are rethrown
 * after stderr is restored.
 */
export function withNativeStderrSilenced<T>(load: () => T): T {
  const calls = dupFunctions();
  if (!calls) return load();
  const saved = calls.dup(2);
  if (saved < 0) return load(); // no fd 2 (closed by the parent): nothing to hide from
  let sink: number;
  try {
    sink = openSync('/dev/null', 'w');
  } catch {
    closeSync(saved);
    return load();
  }
  const swapped = calls.dup2(sink, 2) === 2;
  closeSync(sink);
  try {
    return load();
  } finally {
    if (swapped && calls.dup2(saved, 2) !== 2) {
      // cannot happen with two open descriptors; say so where stderr was rather than go silent
      writeSync(saved, '[contrast] WARNING: could not restore stderr after loading TensorFlow\n');
    } else closeSync(saved);
  }
}
