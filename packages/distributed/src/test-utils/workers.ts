import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkerSpec } from '../testing/worker.js';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const workerScript = join(packageDir, 'dist', 'testing', 'worker.js');

/** Fails unless dist/ is built and newer than every source file: the workers run the built package. */
export function assertBuilt(): void {
  const newest = (dir: string): number =>
    Math.max(
      ...readdirSync(dir, { withFileTypes: true }).map((e) =>
        e.isDirectory()
          ? newest(join(dir, e.name))
          : e.name.endsWith('.test.ts') || dir.endsWith('test-utils')
            ? 0
            : statSync(join(dir, e.name)).mtimeMs,
      ),
    );
  if (
    !existsSync(workerScript) ||
    statSync(workerScript).mtimeMs < newest(join(packageDir, 'src'))
  ) {
    throw new Error(
      `${workerScript} is missing or older than src/: run 'pnpm --filter @contrast/distributed build'`,
    );
  }
}

/** One worker process and the JSON lines it printed. */
export class Worker {
  readonly lines: Record<string, unknown>[] = [];
  readonly child: ChildProcess;
  stderr = '';
  readonly exited: Promise<number | null>;
  private waiters: (() => void)[] = [];

  constructor(spec: WorkerSpec) {
    this.child = spawn(process.execPath, [workerScript, JSON.stringify(spec)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '', TF_CPP_MIN_LOG_LEVEL: '2' },
    });
    let buffer = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.startsWith('{')) this.lines.push(JSON.parse(line) as Record<string, unknown>);
        this.waiters.splice(0).forEach((w) => w());
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString('utf8')));
    this.exited = new Promise((done) => this.child.once('exit', (code) => done(code)));
  }

  /** The first printed object with `key`, waiting for it up to `timeoutMs`. */
  async line(key: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find((l) => key in l);
      if (found) return found;
      if (Date.now() > deadline || this.child.exitCode !== null) {
        throw new Error(
          `no '${key}' line; printed ${JSON.stringify(this.lines)}\n${this.stderr.slice(-2000)}`,
        );
      }
      await new Promise<void>((wake) => {
        this.waiters.push(wake);
        setTimeout(wake, 200);
      });
    }
  }

  /** Merges every printed object (each key once) into one. */
  merged(): Record<string, unknown> {
    return Object.assign({}, ...this.lines) as Record<string, unknown>;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

/** Starts one worker per rank in `ranks` (default all) of `workers`. */
export function startWorkers(
  workers: string[],
  spec: Omit<WorkerSpec, 'workers' | 'rank'>,
  perRank: (rank: number) => Partial<WorkerSpec> = () => ({}),
  ranks: number[] = workers.map((_, r) => r),
): Worker[] {
  return ranks.map((rank) => new Worker({ ...spec, workers, rank, ...perRank(rank) }));
}
