import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseExperiment } from '@contrast/core';
import { builtinPlugins } from '@contrast/cli';
import { createCatalog, runExperiment } from '@contrast/trainer';

/** RGB data through the whole pipeline: CIFAR-10-format files, MoCo with split BN and the symmetric loss. */
describe('training on RGB data (CIFAR-10 binary format)', () => {
  it('runs real steps with shuffle BN and the symmetric loss, and evaluates', async () => {
    const root = mkdtempSync(join(tmpdir(), 'contrast-cifar-'));
    const record = (r: number) => {
      const b = Buffer.alloc(1 + 3072);
      b[0] = r % 10;
      for (let i = 1; i < b.length; i++) b[i] = (r * 13 + i * (1 + (r % 10))) % 256; // class-dependent texture
      return b;
    };
    for (let f = 1; f <= 5; f++) {
      writeFileSync(
        join(root, `data_batch_${f}.bin`),
        Buffer.concat(Array.from({ length: 40 }, (_, i) => record((f - 1) * 40 + i))),
      );
    }
    writeFileSync(
      join(root, 'test_batch.bin'),
      Buffer.concat(Array.from({ length: 50 }, (_, i) => record(1000 + i))),
    );
    const config = parseExperiment({
      name: 'cifar-smoke',
      data: { dataset: 'cifar10', root },
      model: { encoder: 'resnet18', width: 0.125, dim: 16, head: 'mlp', bnSplits: 4 },
      strategy: { name: 'momentum-queue', queueSize: 64, momentum: 0.99 },
      loss: { temperature: 0.2, symmetric: true },
      optim: {
        batchSize: 32,
        epochs: 1,
        maxSteps: 4,
        optimizer: 'lars',
        lr: 0.3,
        warmupEpochs: 0.5,
      },
      eval: { knn: { every: 1, k: 10 }, baselines: false },
      tracking: { dir: join(root, 'runs') },
    });
    const { result } = await runExperiment(config, createCatalog(builtinPlugins()), {
      progress: false,
      log: () => {},
    });
    expect(result.status).toBe('finished');
    expect(result.steps).toBe(4);
    expect(Number.isFinite(result.finalLoss)).toBe(true);
    // symmetric loss of two InfoNCE terms over K = 64 negatives starts near 2 log(65)
    expect(result.finalLoss).toBeGreaterThan(2);
    expect(result.knn.trained).toBeGreaterThanOrEqual(0);
    expect(new Set(result.tensorsAfterStep.slice(1)).size).toBe(1); // no leak with split BN and shuffling
  });
});
