import {
  PluginError,
  Registry,
  SHARED_LOSSES,
  type Catalog,
  isMethodPlugin,
  ModelSchema,
  type DatasetFactory,
  type EncoderEntry,
  type EncoderPlugin,
  type LossEntry,
  type OptimizerEntry,
  type Plugin,
} from '@contrast/core';
import { join } from 'node:path';
import {
  loadCifar10,
  loadCifar100,
  loadFashionMnist,
  openImageFolder,
  loadStl10,
  subsetTrain,
} from '@contrast/data';
import { builtinEncoders } from '@contrast/models';
import { BUILTIN_OPTIMIZERS } from './optimizers.js';

/**
 * Registries of everything built in (encoders, datasets, the shared losses, the
 * optimizers), plus the given plugins: method plugins with the losses,
 * encoders and optimizers they contribute, and encoder plugins (encoders only).
 * @throws PluginError when two plugins share a name, or a loss, encoder or optimizer name is taken.
 */
export function createCatalog(plugins: readonly (Plugin | EncoderPlugin)[]): Catalog {
  const catalog: Catalog = {
    plugins: new Registry<Plugin>('strategy'),
    encoders: new Registry<EncoderEntry>('encoder'),
    datasets: new Registry<DatasetFactory>('dataset'),
    losses: new Registry<LossEntry>('loss'),
    optimizers: new Registry<OptimizerEntry>('optimizer'),
  };
  for (const [name, entry] of Object.entries(SHARED_LOSSES)) catalog.losses.register(name, entry);
  for (const [name, entry] of Object.entries(BUILTIN_OPTIMIZERS)) {
    catalog.optimizers.register(name, entry);
  }
  for (const [name, entry] of Object.entries(builtinEncoders())) {
    catalog.encoders.register(name, entry);
  }
  for (const p of plugins) {
    registerEncoders(catalog, p);
    if (!isMethodPlugin(p)) continue;
    if (catalog.plugins.has(p.name)) {
      throw new PluginError(p.name, 'two plugins have this name', {
        hint: 'rename one of them (names are what strategy.name refers to)',
      });
    }
    catalog.plugins.register(p.name, p);
    for (const [name, entry] of Object.entries(p.losses ?? {})) {
      if (catalog.losses.has(name)) {
        throw new PluginError(p.name, `contributes a loss named '${name}', which exists already`, {
          hint: `known losses: ${catalog.losses.names().join(', ')}; pick another name`,
        });
      }
      catalog.losses.register(name, entry);
    }
    for (const [name, entry] of Object.entries(p.optimizers ?? {})) {
      if (catalog.optimizers.has(name)) {
        throw new PluginError(
          p.name,
          `contributes an optimizer named '${name}', which exists already`,
          {
            hint: `known optimizers: ${catalog.optimizers.names().join(', ')}; pick another name`,
          },
        );
      }
      catalog.optimizers.register(name, entry);
    }
  }
  const root = (data: { root?: string | undefined }, name: string) =>
    data.root ?? join('data', name);
  catalog.datasets
    .register('fashion-mnist', (data) => subsetTrain(loadFashionMnist(data.root), data.trainSubset))
    .register('cifar10', (data) =>
      subsetTrain(loadCifar10(root(data, 'cifar10')), data.trainSubset),
    )
    .register('cifar100', (data) =>
      subsetTrain(loadCifar100(root(data, 'cifar100')), data.trainSubset),
    )
    .register('stl10', (data) => subsetTrain(loadStl10(root(data, 'stl10')), data.trainSubset))
    .register('image-folder', (data) =>
      openImageFolder({
        root: root(data, 'images'),
        ...(data.files ? { files: data.files } : {}),
        size: data.imageSize,
        strict: data.strict,
        labels: data.labels,
        ...(data.holdout !== undefined ? { holdout: data.holdout } : {}),
        eval: data.eval,
        ...(data.shard ? { shard: data.shard } : {}),
        subset: data.trainSubset,
      }),
    )
    .register('stl10-unlabeled', (data) =>
      subsetTrain(loadStl10(root(data, 'stl10'), { unlabeled: true }), data.trainSubset),
    );
  return catalog;
}

/**
 * A plugin's encoders into the catalog.
 * @throws PluginError when a name is taken, or an option would shadow a shared `model` field.
 */
function registerEncoders(catalog: Catalog, p: Plugin | EncoderPlugin): void {
  for (const [name, entry] of Object.entries(p.encoders ?? {})) {
    if (catalog.encoders.has(name)) {
      throw new PluginError(
        p.name,
        `contributes an encoder named '${name}', which exists already`,
        {
          hint: `known encoders: ${catalog.encoders.names().join(', ')}; pick another name`,
        },
      );
    }
    const shared = Object.keys(entry.optionsSchema.shape).filter((k) => k in ModelSchema.shape);
    if (shared.length > 0) {
      throw new PluginError(
        p.name,
        `encoder '${name}' has options named as shared model fields: ${shared.join(', ')}`,
        {
          hint: `rename them (shared fields: ${Object.keys(ModelSchema.shape).join(', ')})`,
        },
      );
    }
    catalog.encoders.register(name, entry);
  }
}
