import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { signalExitCode } from './exit-codes.js';
import { childThreadEnv, compiledFile } from './parallel.js';
import { StopSignals, againToAbort, type StopMessage } from './signals.js';

/** How a launched group ended: each rank's exit status, and the group's. */
export interface GroupExit {
  codes: number[];
  code: number;
}

/**
 * The group's exit status: rank 0's when it failed or was stopped (it writes
 * the run and prints the coded error), else the first other rank's failure.
 */
export function groupExitCode(codes: readonly number[]): number {
  if (codes[0] !== 0) return codes[0]!;
  return codes.find((c) => c !== 0) ?? 0;
}

/**
 * `contrast train ... --workers N`: one data-parallel run as N worker processes
 * on this machine, on a loopback cluster (127.0.0.1 addresses; TensorFlow's
 * gRPC server still binds every interface, see the README's security note). Each worker gets
 * cores / N TensorFlow threads (unless TF_NUM_INTRAOP_THREADS is set), its
 * `deviceEnv` (one GPU each on the GPU build) and runs
 * `contrast train <args> --cluster <list> --rank i`.
 *
 * One console: rank 0's output as it is (progress, result, --json); the other
 * ranks run --quiet and their warnings and errors are prefixed `[rank i]`.
 * Stop signals reach the group as one: the first is passed to every worker over
 * IPC (each votes to stop; they stop together after the same step, rank 0
 * checkpoints), a second one kills them. A worker whose launcher dies stops the
 * same way (its IPC channel closes).
 * @returns the group's exit status (groupExitCode)
 */
export async function launchWorkers(
  args: readonly string[],
  /** Every worker's "127.0.0.1:port", in rank order (loopbackCluster). */
  addresses: readonly string[],
  log: (line: string) => void,
  /**
   * Seconds the others get to end by themselves once a worker has failed or
   * been killed (a lost peer fails their next collective within its timeout);
   * then they are killed, so no worker outlives its group.
   */
  graceSeconds = 90,
  /** Each worker's device environment, in rank order (localWorkerDevices: one GPU each). */
  deviceEnv: readonly Record<string, string>[] = [],
): Promise<GroupExit> {
  const workers = addresses.length;
  const cluster = addresses.join(',');
  const children: ChildProcess[] = [];
  let reaper: NodeJS.Timeout | undefined;
  const killAll = () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        log(`[workers] rank ${children.indexOf(c)} did not end with its group: killed`);
        c.kill('SIGKILL');
      }
    }
  };
  const stop = new StopSignals({
    onStop: (s) => {
      log(
        `\n${s}: the workers finish the current step together, checkpoint and stop (${againToAbort(s)})`,
      );
      for (const c of children) {
        if (c.connected) c.send({ cmd: 'contrast:stop', signal: s } satisfies StopMessage);
      }
    },
    onAbort: () => children.forEach((c) => c.kill('SIGKILL')),
  }).install();
  try {
    const exits = Array.from({ length: workers }, (_, rank) => {
      const quiet =
        rank > 0 && !args.includes('--quiet') && !args.includes('-q') ? ['--quiet'] : [];
      const child = spawn(
        process.execPath,
        [
          compiledFile('bin.js'),
          'train',
          ...args,
          ...quiet,
          '--cluster',
          cluster,
          '--rank',
          String(rank),
        ],
        {
          stdio:
            rank === 0
              ? ['ignore', 'inherit', 'inherit', 'ipc']
              : ['ignore', 'ignore', 'pipe', 'ipc'],
          env: { ...childThreadEnv(workers), ...deviceEnv[rank] },
        },
      );
      children.push(child);
      if (rank > 0) {
        createInterface({ input: child.stderr! }).on('line', (l) => {
          if (l.trim() !== '') process.stderr.write(`[rank ${rank}] ${l}\n`);
        });
      }
      return new Promise<number>((res) =>
        child.on('close', (c, signal) => {
          const code = c ?? (signal ? signalExitCode(signal) : 1);
          // a worker that failed or was killed: the others fail their next collective, or are ended
          if (code !== 0 && !reaper) reaper = setTimeout(killAll, graceSeconds * 1000);
          res(code);
        }),
      );
    });
    const codes = await Promise.all(exits);
    return { codes, code: groupExitCode(codes) };
  } finally {
    clearTimeout(reaper);
    stop.dispose();
  }
}
