import { closeSync, openSync, readFileSync, readlinkSync } from 'node:fs';

/** O_APPEND on Linux (asm-generic/fcntl.h), as /proc/self/fdinfo prints the flags: octal. */
const O_APPEND = 0o2000;

/**
 * Whether TensorFlow's start-up lines should be shown: only when the user asked
 * for all of TensorFlow's log (TF_CPP_MIN_LOG_LEVEL=0, which `--verbose` sets).
 */
export function tensorflowBannerWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.TF_CPP_MIN_LOG_LEVEL === '0';
}

/**
 * Whether file descriptor 2 can be swapped out and back without changing where
 * later writes land: a terminal, pipe or device always; a regular file
 * when stdout does not write to it too, or when it was opened for appending. A
 * file shared with stdout by `>log 2>&1` has one offset that a re-opened copy
 * would not share, so it is left alone (TensorFlow's lines then stay in it).
 */
function stderrSwappable(): boolean {
  // readlink, not fstat: on Node 20 an fstat of a pipe just before require() makes
  // the module loader skip resolving symlinks (pnpm's layout then fails to resolve)
  try {
    readlinkSync('/proc/self/fd/0'); // 0 and 1 open: closing 2 makes 2 the lowest free descriptor
    const stdout = readlinkSync('/proc/self/fd/1');
    const target = readlinkSync('/proc/self/fd/2');
    if (!target.startsWith('/') || target.startsWith('/dev/')) return true; // pipe, tty, device
    if (target !== stdout) return true; // a file of its own: appending continues where it was
    const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync('/proc/self/fdinfo/2', 'utf8'));
    return flags !== null && (parseInt(flags[1]!, 8) & O_APPEND) !== 0;
  } catch {
    return false; // no /proc (not Linux): leave stderr as it is
  }
}

/**
 * Runs `load` with the process's file descriptor 2 pointed at /dev/null, then
 * restores it. For loading the native TensorFlow library: its oneDNN notice and
 * absl's "All log messages before absl::InitializeLog() ..." are written to fd 2
 * by C++ static initialisers, before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so
 * that variable cannot hide them (TF 2.21, measured). Node has no dup2; this
 * uses POSIX's lowest-free-descriptor rule: after closing 2, the next open()
 * returns 2. The original stderr is re-opened through /proc/self/fd, which a
 * socket refuses (systemd's journal, a Node parent's 'pipe'): there, and where
 * it is not safe (see stderrSwappable), `load` runs unchanged and the lines show.
 * JavaScript errors thrown by `load` are rethrown after stderr is restored.
 */
export function withNativeStderrSilenced<T>(load: () => T): T {
  if (!stderrSwappable()) return load();
  let saved: number;
  try {
    saved = openSync('/proc/self/fd/2', 'a');
  } catch {
    return load();
  }
  closeSync(2);
  const sink = openSync('/dev/null', 'a');
  try {
    return load();
  } finally {
    closeSync(sink);
    const restored = openSync(`/proc/self/fd/${saved}`, 'a');
    closeSync(saved);
    if (sink !== 2 || restored !== 2) {
      // another thread opened a file in between; say so rather than lose stderr silently
      process.emitWarning(`restoring stderr used descriptors ${sink}/${restored}, not 2`);
    }
  }
}
