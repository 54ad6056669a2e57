import {
  container as rootContainer,
  type DependencyContainer,
  type InjectionToken,
} from 'tsyringe';
import { TrainingClock, type TrainingDataset } from './contracts.js';
import { parseWith } from './config.js';
import { ConfigError, ContrastError, PluginError } from './errors.js';
import type { Catalog, Plugin } from './plugin.js';
import { Rng } from './rng.js';
import type { ExperimentConfig } from './schema.js';
import { Tokens } from './tokens.js';

export interface Composition {
  container: DependencyContainer;
  plugin: Plugin;
  dataset: TrainingDataset;
  /** The strategy section as the plugin's schema parsed it (defaults filled in). */
  strategy: unknown;
}

/** Fails on any unknown name before anything heavy is loaded. */
export function checkNames(config: ExperimentConfig, catalog: Catalog): Plugin {
  const plugin = catalog.plugins.get(config.strategy.name);
  catalog.encoders.get(config.model.encoder);
  catalog.datasets.get(config.data.dataset);
  if (config.loss.name !== undefined) catalog.losses.get(config.loss.name);
  return plugin;
}

/**
 * The composition root: one tsyringe child container per experiment, built
 * from the parsed config. Classes stay constructible with `new` in unit tests;
 * only this function decides which implementation backs each token.
 */
export function composeExperiment(
  config: ExperimentConfig,
  catalog: Catalog,
  options: { dataset?: TrainingDataset; parent?: DependencyContainer } = {},
): Composition {
  const plugin = checkNames(config, catalog);
  const strategy = parseWith(plugin.configSchema, config.strategy, 'strategy');
  const dataset = options.dataset ?? catalog.datasets.get(config.data.dataset)(config.data);
  if (plugin.check) {
    try {
      plugin.check({ config, strategy, dataset });
    } catch (e) {
      if (e instanceof ContrastError) throw e;
      throw new PluginError(plugin.name, (e as Error).message, { cause: e });
    }
  }

  const rng = new Rng(config.seed);
  const child = (options.parent ?? rootContainer).createChildContainer();
  child.register(Tokens.Config, { useValue: config });
  child.register(Tokens.StrategyConfig, { useValue: strategy });
  child.register(Tokens.Rng, { useValue: rng });
  child.register(Tokens.Dataset, { useValue: dataset });
  child.register(Tokens.Clock, { useValue: new TrainingClock() });
  const encoder = catalog.encoders.get(config.model.encoder)(
    {
      model: config.model,
      input: { height: dataset.height, width: dataset.width, channels: dataset.channels },
    },
    rng.fork(),
  );
  child.register(Tokens.Encoder, { useValue: encoder });
  try {
    plugin.register(child);
  } catch (e) {
    if (e instanceof ContrastError) throw e;
    throw new PluginError(plugin.name, `register() failed: ${(e as Error).message}`, { cause: e });
  }
  if (config.loss.name !== undefined) {
    child.register(Tokens.Loss, {
      useValue: catalog.losses.get(config.loss.name)({ datasetSize: dataset.train.n }),
    });
  }
  for (const token of [
    Tokens.NegativeSource,
    Tokens.KeyEncoderPolicy,
    Tokens.Loss,
  ] as InjectionToken<unknown>[]) {
    if (!child.isRegistered(token)) {
      throw new PluginError(plugin.name, `register() did not bind ${String(token)}`, {
        hint: 'a strategy plugin binds Tokens.NegativeSource, Tokens.KeyEncoderPolicy and Tokens.Loss',
      });
    }
  }
  const loss = child.resolve(Tokens.Loss);
  if (loss.negatives !== plugin.negatives) {
    const compatible = catalog.losses
      .names()
      .filter(
        (n) =>
          catalog.losses.get(n)({ datasetSize: dataset.train.n }).negatives === plugin.negatives,
      );
    throw new ConfigError(
      'loss.name',
      `'${loss.name}' needs ${loss.negatives} negatives but strategy '${plugin.name}' provides ${plugin.negatives} ones`,
      {
        hint: `use one of: ${compatible.join(', ')} (or leave loss.name out for the strategy's default)`,
      },
    );
  }
  return { container: child, plugin, dataset, strategy };
}
