import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '@contrast/core';
import type { KnnResult } from '@contrast/eval';
import type { TrainingSession } from './session.js';

/**
 * The kNN baselines a study's runs share (`TrainOptions.baselineCache`, a folder):
 * the raw-pixel kNN depends only on the data and the protocol, and the random-init
 * kNN also on the backbone's initial parameters, so runs that agree on those (every
 * method of one seed, with the same backbone) compute each once and read it after.
 *
 * The key is the SHA-256 of: the dataset's content digest (no digest: nothing is
 * cached), `data.*` but the augmentation, `eval.knn.*` but `every`, and for the
 * random-init kNN the encoder's name and the shape and values of every backbone parameter
 * (`Encoder.backboneParameters`, else all `parameters`). Each entry is one JSON
 * file written atomically (`<key>.json`), so runs in other processes (`--parallel`,
 * queue workers) share it; two that compute the same entry at once write the same.
 */
export type BaselineKind = 'raw-pixels' | 'random-init';

interface Entry extends KnnResult {
  kind: BaselineKind;
  dataset: string;
  /** When the entry was computed (ISO time), for a reader of the cache. */
  computedAt: string;
}

/** The cache key of a baseline of this session, or undefined when its dataset has no digest. */
export function baselineKey(session: TrainingSession, kind: BaselineKind): string | undefined {
  const { config, dataset, encoder } = session;
  if (!dataset.digest) return undefined;
  const { augmentation: _augmentation, ...data } = config.data;
  const { every: _every, ...knn } = config.eval.knn;
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ kind, dataset: dataset.name, digest: dataset.digest, data, knn }));
  if (kind === 'random-init') {
    const params = encoder.backboneParameters?.() ?? encoder.parameters();
    hash.update(JSON.stringify({ encoder: encoder.name, featureDim: encoder.featureDim }));
    for (const p of params) {
      hash.update(`${p.shape.join('x')}:${p.dtype};`); // not p.name: unique per process, not per init
      const values = p.dataSync();
      hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    }
  }
  return hash.digest('hex');
}

/** The cached result under `key` in `dir`, or undefined (none, or unreadable: computed again). */
export function readBaseline(dir: string, key: string): KnnResult | undefined {
  const file = join(dir, `${key}.json`);
  if (!existsSync(file)) return undefined;
  try {
    const e = JSON.parse(readFileSync(file, 'utf8')) as Partial<Entry>;
    if (typeof e.accuracy !== 'number' || typeof e.bankSize !== 'number') return undefined;
    return {
      accuracy: e.accuracy,
      bankSize: e.bankSize,
      testSize: e.testSize ?? Number.NaN,
      seconds: e.seconds ?? Number.NaN,
    };
  } catch {
    return undefined;
  }
}

/** Stores `result` under `key` in `dir` (created if needed), atomically. */
export function writeBaseline(
  dir: string,
  key: string,
  kind: BaselineKind,
  dataset: string,
  result: KnnResult,
): void {
  mkdirSync(dir, { recursive: true });
  const entry: Entry = { kind, dataset, ...result, computedAt: new Date().toISOString() };
  writeFileAtomic(join(dir, `${key}.json`), `${JSON.stringify(entry, null, 2)}\n`);
}

/**
 * A baseline from the cache in `dir` when there is one, else `compute()` stored
 * there; `cached` says which. Without `dir` (or a dataset digest) it computes.
 */
export function cachedBaseline(
  dir: string | undefined,
  session: TrainingSession,
  kind: BaselineKind,
  compute: () => KnnResult,
): KnnResult & { cached: boolean } {
  const key = dir ? baselineKey(session, kind) : undefined;
  const hit = dir && key ? readBaseline(dir, key) : undefined;
  if (hit) return { ...hit, cached: true };
  const r = compute();
  if (dir && key) writeBaseline(dir, key, kind, session.dataset.name, r);
  return { ...r, cached: false };
}
