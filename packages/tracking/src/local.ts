import { accessSync, appendFileSync, constants, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { RunDirError, writeFileAtomic, type MetricRecord, type Tracker } from '@contrast/core';

export interface RunDirectory {
  path: string;
  id: string;
}

function timestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

/** Fails early, before any work, when runs cannot be written under `root`. */
export function checkRunRoot(root: string): string {
  const abs = resolve(root);
  try {
    mkdirSync(abs, { recursive: true });
    accessSync(abs, constants.W_OK);
  } catch (e) {
    throw new RunDirError(
      `cannot write runs under ${abs} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      {
        hint: 'choose a writable folder with --set tracking.dir=PATH',
        cause: e,
      },
    );
  }
  return abs;
}

/** Creates `<root>/<name>-<UTC time>[-n]`, never reusing an existing folder. */
export function createRunDirectory(root: string, name: string): RunDirectory {
  const abs = checkRunRoot(root);
  const base = `${name}-${timestamp()}`;
  for (let n = 0; n < 1000; n++) {
    const id = n === 0 ? base : `${base}-${n}`;
    const path = join(abs, id);
    if (existsSync(path)) continue;
    try {
      mkdirSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new RunDirError(`cannot create ${path}: ${(e as Error).message}`, { cause: e });
    }
    mkdirSync(join(path, 'artifacts'));
    return { path, id };
  }
  throw new RunDirError(`too many runs named ${base} in ${abs}`);
}

/**
 * The embedded default tracker: everything in the run directory.
 *   config.yaml    resolved config       metrics.jsonl  one JSON record per line
 *   summary.json   status + final numbers (atomic)     artifacts/     files
 * Metrics are buffered and appended in blocks; close() flushes.
 */
export class LocalRunTracker implements Tracker {
  readonly name = 'local';
  private buffer: string[] = [];
  private summary: Record<string, unknown> = {};
  private readonly started = new Date();
  /** When close() ended the run (ms since the epoch); summary.json holds it as `ended`. */
  endedAt: number | undefined;
  /** 'running' until close(); a summary written after close (e.g. the MLflow run id) keeps the final status. */
  private status = 'running';

  constructor(
    readonly run: RunDirectory,
    private readonly flushEvery = 50,
  ) {}

  logParams(params: Record<string, unknown>): void {
    writeFileAtomic(join(this.run.path, 'config.yaml'), stringify(params));
    this.writeSummary();
  }

  logMetrics(record: MetricRecord): void {
    this.buffer.push(JSON.stringify({ ...record, time: Date.now() / 1000 }));
    if (this.buffer.length >= this.flushEvery) this.flush();
  }

  flush(): void {
    if (this.buffer.length === 0) return;
    appendFileSync(join(this.run.path, 'metrics.jsonl'), `${this.buffer.join('\n')}\n`);
    this.buffer = [];
  }

  setSummary(summary: Record<string, unknown>): void {
    this.summary = { ...this.summary, ...summary };
    this.writeSummary();
  }

  /** Tags go into summary.json's `tags` (a tracking server receives them from there too). */
  setTags(tags: Record<string, string>): void {
    const old = (this.summary.tags as Record<string, string> | undefined) ?? {};
    this.setSummary({ tags: { ...old, ...tags } });
  }

  /** A value set with setSummary, if any. */
  summaryValue(key: string): unknown {
    return this.summary[key];
  }

  saveArtifact(name: string, data: Uint8Array | string): void {
    writeFileAtomic(join(this.run.path, 'artifacts', name), data);
  }

  /** The file is already in the run directory; nothing to copy. */
  attachFile(): void {}

  private writeSummary(): void {
    const doc = {
      id: this.run.id,
      status: this.status,
      started: this.started.toISOString(),
      updated: new Date().toISOString(),
      ...this.summary,
    };
    writeFileAtomic(join(this.run.path, 'summary.json'), `${JSON.stringify(doc, null, 2)}\n`);
  }

  async close(status: 'finished' | 'failed' | 'interrupted'): Promise<void> {
    this.flush();
    this.endedAt = Date.now();
    this.summary = { ...this.summary, ended: new Date(this.endedAt).toISOString() };
    this.status = status;
    this.writeSummary();
  }
}
