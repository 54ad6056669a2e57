import { Worker } from 'node:worker_threads';

/**
 * Ends this process when its parent dies (it is re-parented, to init or a
 * subreaper, so its parent pid changes). The check runs every `pollMs` on a
 * worker thread, which has its own event loop: it fires even while the main
 * thread is stuck in a synchronous step or a loop of microtasks, where neither
 * an IPC 'disconnect' event nor a SIGTERM handler can run. `graceMs` lets the
 * main thread exit cleanly first (see processor.ts); then SIGKILL. Defaults:
 * poll every 250 ms, 1 s of grace: the process is gone at most 1.25 s after
 * its parent. The thread is unref'd: it never keeps the process alive.
 */
export function dieWithParent(options: { pollMs?: number; graceMs?: number } = {}): Worker {
  const code = `
    const { workerData } = require('node:worker_threads');
    const timer = setInterval(() => {
      if (process.ppid === workerData.parent) return;
      clearInterval(timer);
      setTimeout(() => process.kill(workerData.pid, 'SIGKILL'), workerData.graceMs);
    }, workerData.pollMs);
  `;
  const thread = new Worker(code, {
    eval: true,
    workerData: {
      pid: process.pid,
      parent: process.ppid, // read here: the parent may die before the thread starts
      pollMs: options.pollMs ?? 250,
      graceMs: options.graceMs ?? 1000,
    },
  });
  thread.unref();
  return thread;
}
