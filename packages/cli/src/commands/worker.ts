import { UsageError } from '@contrast/core/errors';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { signalExitCode } from '../exit-codes.js';
import { numberArg, QUEUE_ENV, queueOption } from '../options.js';
import { Output } from '../output.js';
import { againToAbort, StopSignals } from '../signals.js';

const HELP = `
Takes one job at a time and trains it in a sandboxed child process, in the
study's folder (which must be on a file system every worker shares).

Stopping: SIGINT, SIGTERM or SIGHUP stop the running job cleanly (checkpoint,
run marked interrupted) and put it back on the queue, where another worker
resumes it from the checkpoint; then the worker exits 130 / 143 / 129. An idle
worker exits at once. A second signal aborts (the job's lock expires and it is
retried).

Example:
  contrast worker --queue redis://host:6379`;

/** `contrast worker`: run queued study configurations, one at a time. */
export function registerWorker(program: Command, ctx: CliContext): void {
  program
    .command('worker')
    .description('run queued study configurations (BullMQ on Redis), one at a time')
    .addOption(queueOption('the Redis server to take jobs from'))
    .option(
      '--lock-seconds <s>',
      'job lock duration; a dead worker is noticed after about this long',
      numberArg({ min: 0, above: true }, '--lock-seconds 30'),
      30,
    )
    .addHelpText('after', HELP)
    .action(async (flags: { queue?: string; lockSeconds: number }) => {
      ctx.exitCode = await worker(flags);
    });
}

async function worker(flags: { queue?: string; lockSeconds: number }): Promise<number> {
  if (!flags.queue) {
    throw new UsageError('a worker needs --queue redis://host:port', {
      hint: `or set ${QUEUE_ENV}=redis://host:port`,
    });
  }
  const out = new Output();
  const { startWorker, stopWorker } = await import('../queue.js');
  const w = await startWorker({ queue: flags.queue, lockSeconds: flags.lockSeconds, log: out.log });
  out.info(`[worker ${process.pid}] waiting for jobs on ${flags.queue}`);
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    const stop = new StopSignals({
      onStop: (s) => {
        out.warn(
          `[worker ${process.pid}] ${s}: stopping; a running job checkpoints and goes back to the queue (${againToAbort(s)})`,
        );
        resolve(s);
      },
    }).install();
    w.on('closed', () => stop.dispose());
  });
  const signal = await stopped;
  await stopWorker(w, signal);
  out.info(`[worker ${process.pid}] stopped`);
  return signalExitCode(signal);
}
