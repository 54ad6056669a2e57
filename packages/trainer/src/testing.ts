import type * as tf from '@tensorflow/tfjs';
import type { ExperimentInput, Plugin } from '@contrast/core';
import { createCatalog } from './catalog.js';
import { createStepHarness, type StepHarness } from './harness.js';

/**
 * Small helpers for method tests: copy variables' values, compare copies
 * (host reads: for tests, never for a training step); the small experiment and
 * step harness plugin tests share.
 */

/** The current values of `vars`, copied to the host. */
export function snapshotVariables(vars: readonly tf.Variable[]): Float32Array[] {
  return vars.map((v) => Float32Array.from(v.dataSync()));
}

/** The largest absolute element-wise difference between two snapshots of the same variables. */
export function maxAbsDiff(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let worst = 0;
  a.forEach((x, i) => x.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - b[i]![j]!)))));
  return worst;
}

/** The sections a method's plugin test varies: `strategy` (besides its name) and `loss`. */
export interface PluginTestSections {
  strategy?: Record<string, unknown>;
  loss?: Record<string, unknown>;
}

/**
 * The small experiment of a method's plugin tests (Barlow Twins, VICReg): 512
 * Fashion-MNIST training images, the ConvNet at width 1/4 (8-16-32 channels)
 * with an 'mlp-bn' projector 32 -> 32 -> 16, batch 32, SGD at lr 0.05; the
 * strategy named `method`, with `sections` merged in.
 */
export function pluginTestExperiment(
  method: string,
  { strategy = {}, loss = {} }: PluginTestSections = {},
): ExperimentInput {
  return {
    name: `${method}-test`,
    data: { trainSubset: 512 },
    model: { encoder: 'convnet', width: 0.25, dim: 16, head: 'mlp-bn', hiddenDim: 32 },
    strategy: { name: method, ...strategy },
    loss,
    optim: { batchSize: 32, lr: 0.05 },
  };
}

/**
 * A step harness of `plugin` alone on `pluginTestExperiment`.
 * @throws ConfigError (and the composition's other errors) for sections the plugin refuses.
 */
export function pluginTestHarness(plugin: Plugin, sections: PluginTestSections = {}): StepHarness {
  return createStepHarness(pluginTestExperiment(plugin.name, sections), createCatalog([plugin]));
}
