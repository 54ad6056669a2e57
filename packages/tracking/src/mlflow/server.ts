import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { TrackingError } from '@contrast/core';

/** The MLflow version the set-up script installs (its venv is cached). */
export const MLFLOW_VERSION = '3.17.2';

/**
 * The `mlflow` executable: CONTRAST_MLFLOW_BIN, else the venv the set-up script
 * creates (CONTRAST_MLFLOW_VENV, default `$CONTRAST_CACHE/mlflow-venv`, default
 * `~/.cache/contrast/mlflow-venv`).
 */
export function mlflowBinary(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.CONTRAST_CACHE ?? join(homedir(), '.cache', 'contrast');
  const venv = env.CONTRAST_MLFLOW_VENV ?? join(cache, 'mlflow-venv');
  const bin = env.CONTRAST_MLFLOW_BIN ?? join(venv, 'bin', 'mlflow');
  if (!existsSync(bin)) {
    throw new TrackingError(`no MLflow at ${bin}`, {
      hint: `run scripts/setup.sh (it installs mlflow==${MLFLOW_VERSION} into ${venv}), or set CONTRAST_MLFLOW_BIN`,
    });
  }
  return bin;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

export interface MlflowServerOptions {
  /** Holds mlflow.db, artifacts/ and server.log. */
  dir: string;
  port?: number;
  bin?: string;
  /** How long to wait for /health (default 120 s). */
  startTimeoutMs?: number;
  /** Run MLflow's basic-auth app with this admin password (user `admin`). */
  adminPassword?: string;
}

/**
 * A real `mlflow server` on 127.0.0.1 with a sqlite backend store and a local
 * artifacts destination (served through the artifact proxy). Stop and start
 * again keep the same port, store and artifacts, as a restarted server would.
 */
export class MlflowServer {
  private proc: ChildProcess | undefined;

  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly bin: string,
    private readonly startTimeoutMs: number,
    private readonly adminPassword: string | undefined,
  ) {}

  get uri(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(options: MlflowServerOptions): Promise<MlflowServer> {
    const dir = resolve(options.dir);
    mkdirSync(join(dir, 'artifacts'), { recursive: true });
    const server = new MlflowServer(
      dir,
      options.port ?? (await freePort()),
      options.bin ?? mlflowBinary(),
      options.startTimeoutMs ?? 120_000,
      options.adminPassword,
    );
    await server.startProcess();
    return server;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async startProcess(): Promise<void> {
    if (this.running) return;
    const log = openSync(join(this.dir, 'server.log'), 'a');
    const args = [
      'server',
      '--backend-store-uri',
      `sqlite:///${join(this.dir, 'mlflow.db')}`,
      '--artifacts-destination',
      join(this.dir, 'artifacts'),
      '--host',
      '127.0.0.1',
      '--port',
      String(this.port),
      '--workers',
      '1',
      ...(this.adminPassword ? ['--app-name', 'basic-auth'] : []),
    ];
    const auth = this.adminPassword
      ? {
          MLFLOW_AUTH_ADMIN_PASSWORD: this.adminPassword,
          MLFLOW_FLASK_SERVER_SECRET_KEY: 'contrast-local-server',
        }
      : {};
    const proc = spawn(this.bin, args, {
      cwd: this.dir,
      detached: true, // its own process group: stop() reaches the workers too
      stdio: ['ignore', log, log],
      env: { ...process.env, PYTHONUNBUFFERED: '1', ...auth }, // the auth store lands in `dir`
    });
    closeSync(log);
    this.proc = proc;
    const until = Date.now() + this.startTimeoutMs;
    while (Date.now() < until) {
      if (!this.running) {
        throw new TrackingError(
          `mlflow server exited with ${proc.exitCode ?? proc.signalCode} during start; see ${join(this.dir, 'server.log')}`,
        );
      }
      try {
        const res = await fetch(`${this.uri}/health`, { signal: AbortSignal.timeout(2000) });
        if (res.ok) return;
      } catch {
        /* not up yet */
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    await this.stop('SIGKILL');
    throw new TrackingError(
      `mlflow server did not answer /health within ${this.startTimeoutMs / 1000} s; see ${join(this.dir, 'server.log')}`,
    );
  }

  /** Stops the whole process group (SIGKILL simulates a crash) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.running) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    try {
      process.kill(-proc.pid!, signal);
    } catch {
      proc.kill(signal);
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 10_000);
    await exited;
    clearTimeout(timer);
    // the workers may outlive the parent by a moment; make sure the port is free again
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
    this.proc = undefined;
  }
}
