import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadExperiment } from '@contrast/core';
import { builtinPlugins } from '@contrast/cli';
import { createCatalog, runExperiment, type RunOutcome } from '@contrast/trainer';

/**
 * A small trained run for the export tests: MoCo on a 28x28x1 ConvNet (width
 * 0.5, 64 features, dim 32), 16 steps on 2,048 Fashion-MNIST images, under `root`.
 */
export async function trainTinyRun(root: string, name: string): Promise<RunOutcome> {
  const file = join(root, `${name}.yaml`);
  writeFileSync(
    file,
    `name: ${name}
data: { trainSubset: 2048 }
model: { encoder: convnet, width: 0.5, dim: 32 }
strategy: { name: momentum-queue, queueSize: 512 }
optim: { batchSize: 128, epochs: 1 }
eval: { knn: { every: 1, testSize: 500, bankSize: 2048 }, baselines: false, alignUniform: 0 }
tracking: { dir: ${join(root, 'runs')} }
`,
  );
  return runExperiment(loadExperiment(file), createCatalog(builtinPlugins()), {
    progress: false,
    log: () => {},
  });
}
