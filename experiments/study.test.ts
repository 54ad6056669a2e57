import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinPlugins } from '@contrast/cli';
import { runStudy } from '@contrast/study';
import { createCatalog } from '@contrast/trainer';

/** A tiny study over two mechanisms on real Fashion-MNIST (256 images, ConvNet). */
function writeStudy(dir: string): string {
  writeFileSync(
    join(dir, 'base.yaml'),
    'name: base\ndata: { trainSubset: 256 }\nmodel: { encoder: convnet, width: 0.25, dim: 16 }\n' +
      'strategy: { name: momentum-queue, queueSize: 64 }\noptim: { batchSize: 32, epochs: 1, lr: 0.01 }\n' +
      'eval: { knn: { every: 0, testSize: 200 }, baselines: false }\n',
  );
  writeFileSync(
    join(dir, 'study.yaml'),
    `name: tiny
base: base.yaml
series:
  - label: end-to-end
    set: { strategy: { name: end-to-end } }
    points: [{ k: 30, set: { optim.batchSize: 16 } }]
  - label: momentum-queue
    points: [{ k: 64 }, { k: 128, set: { strategy.queueSize: 128 } }]
`,
  );
  return join(dir, 'study.yaml');
}

describe('running a study', () => {
  it('runs every configuration once, skips finished ones on a re-run, and reports', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-study-'));
    const file = writeStudy(dir);
    const catalog = () => createCatalog(builtinPlugins());
    const lines: string[] = [];
    const first = await runStudy(file, catalog(), {
      out: join(dir, 'out'),
      progress: false,
      log: (l) => lines.push(l),
    });
    expect(first.results.map((r) => r.series)).toEqual([
      'end-to-end',
      'momentum-queue',
      'momentum-queue',
    ]);
    first.results.forEach((r) => expect(r.knn).toBeGreaterThan(0.2));
    const again = await runStudy(file, catalog(), {
      out: join(dir, 'out'),
      progress: false,
      log: (l) => lines.push(l),
    });
    expect(lines.filter((l) => l.includes('already done'))).toHaveLength(3);
    expect(again.results).toEqual(first.results);
    expect(
      readFileSync(join(dir, 'out', 'results.jsonl'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(3);
    expect(readFileSync(join(dir, 'out', 'table.md'), 'utf8')).toContain('| momentum-queue |');
  });
});
