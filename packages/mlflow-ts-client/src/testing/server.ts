import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { MlflowError } from '../errors.js';

/**
 * The MLflow version this client is tested against (installed with the `auth`
 * extra for the basic-auth app). Keep in step with MLFLOW_VERSION in the
 * repository's scripts/setup.sh.
 */
export const MLFLOW_VERSION = '3.17.2';

const INSTALL_HINT = `install it (pip install "mlflow[auth]==${MLFLOW_VERSION}") and put its bin folder on PATH, or set MLFLOW_BIN to the mlflow executable`;

/**
 * The `mlflow` executable: MLFLOW_BIN if set, else the first `mlflow` on PATH.
 * @throws MlflowError MLFLOW_NOT_INSTALLED
 */
export function mlflowBinary(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MLFLOW_BIN) {
    if (!existsSync(env.MLFLOW_BIN)) {
      throw new MlflowError('MLFLOW_NOT_INSTALLED', `no MLflow at ${env.MLFLOW_BIN} (MLFLOW_BIN)`, {
        hint: INSTALL_HINT,
      });
    }
    return env.MLFLOW_BIN;
  }
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const bin = join(dir, 'mlflow');
    try {
      accessSync(bin, constants.X_OK);
      return bin;
    } catch {
      /* not here */
    }
  }
  throw new MlflowError(
    'MLFLOW_NOT_INSTALLED',
    'no mlflow executable on PATH and MLFLOW_BIN is not set',
    {
      hint: INSTALL_HINT,
    },
  );
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
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
  /** Holds mlflow.db, artifacts/, server.log (and basic_auth.db with adminPassword). */
  dir: string;
  /** Default: a free port. */
  port?: number;
  /** Default: {@link mlflowBinary}. */
  bin?: string;
  /** How long to wait for /health, in ms (default 120 000). */
  startTimeoutMs?: number;
  /** Run MLflow's basic-auth app (`--app-name basic-auth`) with this password for user `admin`. */
  adminPassword?: string;
}

/**
 * A real `mlflow server` on 127.0.0.1 for tests: sqlite backend store, a local
 * artifacts destination served through the `mlflow-artifacts` proxy, one
 * worker, optionally the basic-auth app. Stopping and starting again keeps the
 * port, store and artifacts, as a restarted server would.
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

  /** `http://127.0.0.1:<port>`. */
  get uri(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /**
   * Starts a server and waits until it answers /health (about 5-15 s).
   * @throws MlflowError MLFLOW_NOT_INSTALLED, MLFLOW_SERVER_START (see `<dir>/server.log`)
   */
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

  /** True while the server process is alive. */
  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** (Re)starts the process on the same port, store and artifacts; no-op while running. */
  async startProcess(): Promise<void> {
    if (this.running) return;
    const log = openSync(join(this.dir, 'server.log'), 'a');
    const proc = spawn(this.bin, this.args(), {
      cwd: this.dir, // the basic-auth app keeps its user store in the working directory
      detached: true, // its own process group: stop() reaches the workers too
      stdio: ['ignore', log, log],
      env: { ...process.env, PYTHONUNBUFFERED: '1', ...this.authEnv() },
    });
    closeSync(log);
    this.proc = proc;
    await this.waitHealthy(proc);
  }

  private args(): string[] {
    return [
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
  }

  private authEnv(): Record<string, string> {
    if (!this.adminPassword) return {};
    return {
      MLFLOW_AUTH_ADMIN_PASSWORD: this.adminPassword,
      MLFLOW_FLASK_SERVER_SECRET_KEY: 'mlflow-ts-client-test-server',
    };
  }

  private async waitHealthy(proc: ChildProcess): Promise<void> {
    const logFile = join(this.dir, 'server.log');
    const until = Date.now() + this.startTimeoutMs;
    while (Date.now() < until) {
      if (!this.running) {
        throw new MlflowError(
          'MLFLOW_SERVER_START',
          `mlflow server exited with ${proc.exitCode ?? proc.signalCode} during start; see ${logFile}`,
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
    throw new MlflowError(
      'MLFLOW_SERVER_START',
      `mlflow server did not answer /health within ${this.startTimeoutMs / 1000} s; see ${logFile}`,
    );
  }

  /** Stops the whole process group (SIGKILL simulates a crash) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.running) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    const killGroup = (s: NodeJS.Signals) => {
      try {
        process.kill(-proc.pid!, s);
        return true;
      } catch {
        return false; // already gone
      }
    };
    if (!killGroup(signal)) proc.kill(signal);
    const timer = setTimeout(() => killGroup('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    // the workers may outlive the parent by a moment; make sure the port is free again
    killGroup('SIGKILL');
    this.proc = undefined;
  }
}
