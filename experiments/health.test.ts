import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseExperiment, type ExperimentInput } from '@contrast/core';
import { builtinPlugins } from '@contrast/cli';
import { createCatalog, runExperiment } from '@contrast/trainer';

const root = mkdtempSync(join(tmpdir(), 'contrast-health-'));

/** A short real run on Fashion-MNIST; returns the health warnings' codes and the summary. */
async function run(input: Partial<ExperimentInput>) {
  const config = parseExperiment({
    name: 'health',
    data: { trainSubset: 4096 },
    model: { encoder: 'convnet', width: 0.5, dim: 64 },
    optim: { batchSize: 128, epochs: 3, lr: 0.05, weightDecay: 5e-4 },
    eval: { knn: { bankSize: 4096, testSize: 1000 }, baselines: false, alignUniform: 500 },
    tracking: { dir: root },
    ...input,
  } as ExperimentInput);
  const lines: string[] = [];
  const { runPath, result } = await runExperiment(config, createCatalog(builtinPlugins()), {
    progress: false,
    log: (l) => lines.push(l),
  });
  const summary = JSON.parse(readFileSync(join(runPath, 'summary.json'), 'utf8'));
  return {
    codes: (result.health?.warnings ?? []).map((w) => w.code),
    lines,
    summary,
    result,
    runPath,
  };
}

describe('training health checks on real runs', () => {
  it('flag SimSiam without its stop-gradient (it collapses) and stay silent with it', async () => {
    const simsiam = (stopGradient: boolean) =>
      run({
        model: { encoder: 'convnet', width: 0.5, dim: 64, head: 'mlp-bn', hiddenDim: 128 },
        strategy: { name: 'simsiam', predictorHidden: 32, stopGradient },
      });
    const collapsed = await simsiam(false);
    expect(collapsed.codes).toContain('CONTRAST_HEALTH_COLLAPSE');
    expect(collapsed.lines.some((l) => /warning \[CONTRAST_HEALTH_COLLAPSE\]/.test(l))).toBe(true);
    expect(collapsed.summary.health.warnings[0].code).toBe('CONTRAST_HEALTH_COLLAPSE');
    expect(collapsed.summary.tags['contrast.health.collapse']).toMatch(/^epoch \d$/);
    const healthy = await simsiam(true);
    expect(healthy.codes).toEqual([]);
    expect(healthy.result.health!.last!.stdRatio).toBeGreaterThan(
      3 * collapsed.result.health!.last!.stdRatio,
    );
  });

  it('stay silent on the default MoCo recipe, small', async () => {
    const moco = await run({
      strategy: { name: 'momentum-queue', queueSize: 4096, momentum: 0.99 },
      loss: { temperature: 0.1 },
    });
    expect(moco.codes).toEqual([]);
    expect(moco.result.health!.last!.effectiveRank).toBeGreaterThan(5);
  });

  it('raise no shortcut warning on a 1-step run (the first batch beats a random queue: noise)', async () => {
    const once = await run({
      strategy: { name: 'momentum-queue', queueSize: 4096, momentum: 0.99 },
      loss: { temperature: 0.1 },
      optim: { batchSize: 128, epochs: 1, maxSteps: 1, lr: 0.05, weightDecay: 5e-4 },
      eval: { knn: { bankSize: 512, testSize: 200 }, baselines: false, alignUniform: 0 },
    });
    const [step] = readFileSync(join(once.runPath, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>)
      .filter((r) => r.pretext_accuracy !== undefined);
    // the premise: one batch against the queue's random init reads as solved (>= the
    // shortcut line, HEALTH_THRESHOLDS.accuracy = 0.995)
    expect(step!.pretext_accuracy).toBeGreaterThanOrEqual(0.995);
    expect(once.codes).not.toContain('CONTRAST_HEALTH_SHORTCUT');
  });
});
