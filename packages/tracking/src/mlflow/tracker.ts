import { execFileSync } from 'node:child_process';
import { userInfo } from 'node:os';
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { TrackingError, type MetricRecord, type Tracker } from '@contrast/core';
import type { LocalRunTracker } from '../local.js';
import { SYSTEM_METRICS_INTERVAL_MS, SystemMetricsMonitor } from '../system.js';
import { MlflowClient, type ClientOptions, type DatasetInput, type KeyValue } from './client.js';
import { hasMlflowState, MlflowUploader, RUN_DIR_TAG, type PendingCounts } from './uploader.js';

export interface MlflowTrackerOptions {
  uri: string;
  experimentName: string;
  runName: string;
  /** Study folder whose MLflow run is this run's parent. */
  parentDir?: string;
  input?: DatasetInput;
  /** What started the run, e.g. `contrast train experiments/x.yaml`. */
  source?: string;
  /** Extra tags. */
  tags?: Record<string, string>;
  /**
   * Keys of the logged config that are run settings rather than hyperparameters
   * (a key, or a `prefix.`): uploaded as run tags, not params.
   */
  settings?: readonly string[];
  /**
   * Seconds between system metric samples (`system/...`); default
   * `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`, else MLflow's 10 s; 0 = none
   * (as `MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false`).
   */
  systemMetricsSeconds?: number;
  /** Where the run's MLflow UI link is printed (default: `warn`). */
  info?: (line: string) => void;
  /** Minimum time between background uploads (default 2 s). */
  intervalMs?: number;
  /** How long close() keeps trying to reach the server before leaving the rest spooled (default 20 s). */
  closeDeadlineMs?: number;
  client?: ClientOptions;
  warn?: (line: string) => void;
}

/** The system tags MLflow's own clients set: user, source, git commit. */
export function systemTags(source: string | undefined, cwd = process.cwd()): KeyValue[] {
  const tags: KeyValue[] = [{ key: 'mlflow.source.type', value: 'LOCAL' }];
  tags.push({ key: 'mlflow.source.name', value: source ?? process.argv.slice(1).join(' ') });
  try {
    tags.push({ key: 'mlflow.user', value: userInfo().username });
  } catch {
    /* no passwd entry: leave the user out */
  }
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    if (/^[0-9a-f]{40}$/.test(commit))
      tags.push({ key: 'mlflow.source.git.commit', value: commit });
  } catch {
    /* not a git checkout */
  }
  return tags;
}

/** The system-metrics interval the environment asks for (ms; 0 = off), as MLflow reads it. */
export function systemMetricsIntervalMs(env: NodeJS.ProcessEnv = process.env): number {
  if (/^(false|0)$/i.test(env.MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING ?? '')) return 0;
  const s = Number(env.MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL);
  return Number.isFinite(s) && s > 0 ? s * 1000 : SYSTEM_METRICS_INTERVAL_MS;
}

/**
 * Checks a tracking server before a run exists: refuses a malformed URI, bad
 * credentials or any other definite refusal; a server that is merely
 * unreachable is reported (returns false) and the run spools instead.
 */
export async function probeTrackingServer(
  uri: string,
  experimentName: string,
  options: ClientOptions = {},
): Promise<{ reachable: boolean; reason?: string }> {
  const client = new MlflowClient(uri, {
    attempts: 2,
    backoffMs: 250,
    timeoutMs: 5000,
    ...options,
  });
  try {
    await client.getOrCreateExperiment(experimentName);
    return { reachable: true };
  } catch (e) {
    if (e instanceof TrackingError && e.retryable) return { reachable: false, reason: e.message };
    throw e;
  }
}

/**
 * Local run directory plus MLflow. Every call lands in the run directory first
 * (synchronously); uploads run in the background, never blocking a training
 * step. When the server is unreachable the records stay spooled in the run
 * directory and go up when it answers again, or later with `contrast sync`.
 */
export class MlflowTracker implements Tracker {
  readonly name = 'mlflow';
  readonly uploader: MlflowUploader;
  private busy: Promise<void> | undefined;
  private nextAttemptAt = 0;
  private backoffMs = 1000;
  private offline = false;
  private stopped: TrackingError | undefined;
  private readonly intervalMs: number;
  private readonly closeDeadlineMs: number;
  private readonly warn: (line: string) => void;
  private readonly info: (line: string) => void;
  private linkShown = false;
  private readonly system: SystemMetricsMonitor;
  /** The step and epoch of the latest record: system samples are logged at them. */
  private at = { step: 0, epoch: 0 };

  constructor(
    readonly local: LocalRunTracker,
    options: MlflowTrackerOptions,
  ) {
    this.warn = options.warn ?? ((l) => console.error(l));
    this.info = options.info ?? this.warn;
    this.intervalMs = options.intervalMs ?? 2000;
    this.closeDeadlineMs = options.closeDeadlineMs ?? 20_000;
    const tags = [
      ...systemTags(options.source),
      { key: RUN_DIR_TAG, value: local.run.id },
      ...Object.entries(options.tags ?? {}).map(([key, value]) => ({ key, value })),
    ];
    const uploaderOptions = {
      attempts: 2,
      backoffMs: 250,
      timeoutMs: 10_000,
      ...options.client,
      warn: this.warn,
    };
    if (hasMlflowState(local.run.path)) {
      // a resumed run: same MLflow run, metrics continue from the spool cursor;
      // on another server (an explicit tracking.uri), a new run there gets the whole folder
      this.uploader = MlflowUploader.open(local.run.path, uploaderOptions);
      const uri = new MlflowClient(options.uri, { auth: {} }).base;
      if (this.uploader.state.uri !== uri) this.uploader.retarget(uri);
      this.uploader.reopen();
    } else {
      this.uploader = MlflowUploader.create(
        local.run.path,
        {
          uri: options.uri,
          experimentName: options.experimentName,
          runName: options.runName,
          tags,
          paramsFile: 'config.yaml',
          ...(options.settings ? { settings: [...options.settings] } : {}),
          metricsFile: 'metrics.jsonl',
          ...(options.input ? { input: options.input } : {}),
          ...(options.parentDir ? { parentDir: options.parentDir } : {}),
        },
        uploaderOptions,
      );
      // a run tracked from its resume on: config.yaml is already written (logParams is not called)
      if (existsSync(join(local.run.path, 'config.yaml'))) {
        this.uploader.addArtifact('config.yaml', 'config.yaml');
      }
    }
    const every =
      options.systemMetricsSeconds !== undefined
        ? options.systemMetricsSeconds * 1000
        : systemMetricsIntervalMs();
    this.system = new SystemMetricsMonitor(
      (values) => this.logMetrics({ ...this.at, ...values }),
      every,
    );
    this.system.start();
  }

  logParams(params: Record<string, unknown>): void {
    this.local.logParams(params);
    this.uploader.addArtifact('config.yaml', 'config.yaml');
    this.kick();
  }

  logMetrics(record: MetricRecord): void {
    this.at = { step: record.step, epoch: record.epoch };
    this.local.logMetrics(record);
    this.kick();
  }

  setSummary(summary: Record<string, unknown>): void {
    this.local.setSummary(summary);
  }

  /** Tags go into summary.json and, as MLflow run tags, to the server with the next upload. */
  setTags(tags: Record<string, string>): void {
    this.local.setTags(tags);
    this.uploader.addTags(tags);
    this.kick();
  }

  saveArtifact(name: string, data: Uint8Array | string): void {
    this.local.saveArtifact(name, data);
    this.uploader.addArtifact(name, `artifacts/${name}`);
    this.kick();
  }

  attachFile(name: string, path: string): void {
    this.uploader.addArtifact(name, relative(this.local.run.path, path));
  }

  /** Starts a background upload unless one is running or the server is backing off. */
  kick(force = false): void {
    if (this.busy || this.stopped) return;
    const now = Date.now();
    if (!force && now < this.nextAttemptAt) return;
    this.nextAttemptAt = now + this.intervalMs;
    this.busy = this.attempt().finally(() => {
      this.busy = undefined;
    });
  }

  private async attempt(): Promise<void> {
    this.local.flush();
    try {
      await this.uploader.pump();
      if (this.uploader.state.runId && this.local.summaryValue('mlflow') === undefined) {
        const s = this.uploader.state;
        this.local.setSummary({
          mlflow: { uri: s.uri, experimentId: s.experimentId, runId: s.runId },
        });
      }
      const url = this.uploader.runUrl();
      if (url && !this.linkShown) {
        this.linkShown = true;
        this.info(`[tracking] MLflow run ${url}`);
      }
      if (this.offline) {
        this.warn(`[mlflow] ${this.uploader.client.base} answers again; spooled records uploaded`);
      }
      this.offline = false;
      this.backoffMs = 1000;
    } catch (e) {
      if (!(e instanceof TrackingError)) throw e;
      if (e.retryable) {
        if (!this.offline) {
          this.warn(
            `[mlflow] ${e.message}; spooling to ${this.local.run.path} and retrying in the background`,
          );
        }
        this.offline = true;
        this.nextAttemptAt = Date.now() + this.backoffMs;
        this.backoffMs = Math.min(30_000, this.backoffMs * 2);
      } else {
        this.stopped = e;
        this.warn(
          `[mlflow] uploads stopped: ${e.message}\n  everything stays in ${this.local.run.path}; after fixing the cause run: contrast sync ${this.local.run.path}`,
        );
      }
    }
  }

  /** Waits for the upload in flight, then keeps trying until done or the deadline. */
  async drain(deadlineMs = this.closeDeadlineMs): Promise<PendingCounts> {
    const until = Date.now() + deadlineMs;
    for (;;) {
      if (this.busy) {
        // a request to a server that hangs must not hold the run past its deadline
        const left = until - Date.now();
        if (left <= 0) break;
        let timer: NodeJS.Timeout | undefined;
        const timedOut = await Promise.race([
          this.busy.then(() => false),
          new Promise<boolean>((r) => (timer = setTimeout(() => r(true), left))),
        ]);
        clearTimeout(timer);
        if (timedOut) break;
      }
      if (this.stopped || this.uploader.isComplete()) break;
      const wait = this.nextAttemptAt - Date.now();
      if (Date.now() + Math.max(0, wait) > until) break;
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      this.kick(true);
    }
    return this.uploader.pending();
  }

  async close(status: 'finished' | 'failed' | 'interrupted'): Promise<void> {
    this.system.stop(true);
    await this.local.close(status);
    this.uploader.addArtifact('summary.json', 'summary.json');
    this.uploader.setStatus(
      status === 'finished' ? 'FINISHED' : status === 'failed' ? 'FAILED' : 'KILLED',
      this.local.endedAt, // the end time summary.json records: sync compares the two
    );
    const left = await this.drain();
    if (!this.uploader.isComplete()) {
      const parts = [
        left.runCreated ? '' : 'the run itself',
        left.metricBytes ? `${left.metricBytes} bytes of metrics` : '',
        left.artifacts.length ? `artifacts ${left.artifacts.join(', ')}` : '',
        left.params ? 'params' : '',
        left.tags ? 'tags' : '',
        left.status ? 'the final status' : '',
      ].filter(Boolean);
      this.warn(
        `[mlflow] not uploaded yet: ${parts.join('; ')}. They are kept in ${this.local.run.path}; upload them with: contrast sync ${this.local.run.path}`,
      );
    }
  }
}
