import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseExperiment, type Tracker } from '@contrast/core';
import { baselineKey } from './baseline-cache.js';
import { createCatalog } from './catalog.js';
import { createSession } from './session.js';
import { testMoco } from './test-utils/moco.js';
import { Trainer } from './trainer.js';

/** One step of the test MoCo on 256 images; the baselines on a 256-image bank and 100 test images. */
const config = (extra: { seed?: number; model?: object; knn?: object; data?: object } = {}) =>
  parseExperiment({
    name: 'baselines',
    seed: extra.seed ?? 0,
    data: { trainSubset: 256, ...extra.data },
    model: { encoder: 'convnet', width: 0.25, dim: 16, ...extra.model },
    strategy: { name: 'moco' },
    optim: { batchSize: 64, epochs: 1, maxSteps: 1 },
    eval: { knn: { every: 0, bankSize: 256, testSize: 100, ...extra.knn }, alignUniform: 0 },
  });

const tracker = (): Tracker & { baselines: Record<string, number>[] } => {
  const baselines: Record<string, number>[] = [];
  return {
    name: 'memory',
    baselines,
    logParams: () => undefined,
    logMetrics: (r) => {
      if (r.knn_raw_pixels !== undefined) baselines.push(r as unknown as Record<string, number>);
    },
    setSummary: () => undefined,
    saveArtifact: () => undefined,
    close: async () => undefined,
  };
};

const dir = mkdtempSync(join(tmpdir(), 'contrast-baselines-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Trains one step with the cache (or without); its log lines and the baselines it logged. */
async function run(experiment: ReturnType<typeof config>, cache: string | undefined) {
  const session = createSession(experiment, createCatalog([testMoco]));
  const lines: string[] = [];
  const t = tracker();
  const result = await new Trainer(session, t).run({
    progress: false,
    log: (l) => void lines.push(l),
    ...(cache ? { baselineCache: cache } : {}),
  });
  session.dispose();
  return { lines: lines.filter((l) => l.startsWith('kNN ')), logged: t.baselines[0]!, result };
}

describe('kNN baselines shared through a study folder', () => {
  it('keys: the same initial backbone under another head shares both; another seed only the raw pixels', () => {
    const key = (c: ReturnType<typeof config>) => {
      const s = createSession(c, createCatalog([testMoco]));
      const k = { px: baselineKey(s, 'raw-pixels'), init: baselineKey(s, 'random-init') };
      s.dispose();
      return k;
    };
    const a = key(config());
    expect(a.px).toMatch(/^[0-9a-f]{64}$/);
    expect(a.init).not.toBe(a.px);
    // the projection head is built after the backbone: the backbone's initial weights are the same
    expect(key(config({ model: { head: 'mlp', dim: 32 } }))).toEqual(a);
    // when the kNN is run does not change what it measures; the augmentation is not used by it
    expect(key(config({ knn: { every: 1 } }))).toEqual(a);
    expect(key(config({ data: { augmentation: { flip: 0 } } }))).toEqual(a);
    const seed1 = key(config({ seed: 1 }));
    expect(seed1.px).toBe(a.px);
    expect(seed1.init).not.toBe(a.init);
    // the protocol, the data and the backbone are in the key
    expect(key(config({ knn: { k: 20 } })).px).not.toBe(a.px);
    expect(key(config({ data: { trainSubset: 128 } })).px).not.toBe(a.px);
    expect(key(config({ model: { width: 0.5 } })).init).not.toBe(a.init);
  });

  it('the first run computes and stores both; the next reads them and logs the same numbers', async () => {
    const cache = join(dir, 'shared');
    const plain = await run(config(), undefined);
    const first = await run(config(), cache);
    expect(readdirSync(cache).filter((f) => f.endsWith('.json'))).toHaveLength(2);
    expect(first.lines.join('\n')).not.toContain('cache');
    // another head (MoCo v2's MLP), same seed: both from the cache, bit-equal to computing them
    const second = await run(config({ model: { head: 'mlp', dim: 32 } }), cache);
    expect(second.lines).toHaveLength(2);
    for (const l of second.lines) expect(l).toContain(`from the study's cache ${cache}`);
    for (const r of [first, second]) {
      expect(r.logged.knn_raw_pixels).toBe(plain.logged.knn_raw_pixels);
      expect(r.logged.knn_random_init).toBe(plain.logged.knn_random_init);
      expect(r.result.knn.rawPixels).toBe(plain.result.knn.rawPixels);
      expect(r.result.knn.randomInit).toBe(plain.result.knn.randomInit);
    }
    // another seed: the raw pixels from the cache, its own random init computed and stored
    const other = await run(config({ seed: 1 }), cache);
    expect(other.lines[0]).toContain('from the study');
    expect(other.lines[1]).not.toContain('cache');
    expect(readdirSync(cache).filter((f) => f.endsWith('.json'))).toHaveLength(3);
    const entries = readdirSync(cache).map(
      (f) => JSON.parse(readFileSync(join(cache, f), 'utf8')) as { kind: string; bankSize: number },
    );
    expect(entries.map((e) => e.kind).sort()).toEqual(['random-init', 'random-init', 'raw-pixels']);
    expect(entries.every((e) => e.bankSize === 256)).toBe(true);
  });
});
