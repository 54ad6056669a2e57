import {
  InfoNceLoss,
  NceLoss,
  NtXentLoss,
  Registry,
  type Catalog,
  type DatasetFactory,
  type EncoderFactory,
  type LossFactory,
  type Plugin,
} from '@contrast/core';
import { join } from 'node:path';
import {
  loadCifar10,
  loadCifar100,
  loadFashionMnist,
  loadImageFolder,
  loadStl10,
  subsetTrain,
} from '@contrast/data';
import { createEncoder, ENCODER_NAMES } from '@contrast/models';
import { nativeImageDecoder } from '@contrast/backend';

/** Registries of everything built in, plus the given strategy plugins. */
export function createCatalog(
  plugins: readonly Plugin[],
  extra: { losses?: Record<string, LossFactory> } = {},
): Catalog {
  const catalog: Catalog = {
    plugins: new Registry<Plugin>('strategy'),
    encoders: new Registry<EncoderFactory>('encoder'),
    datasets: new Registry<DatasetFactory>('dataset'),
    losses: new Registry<LossFactory>('loss'),
  };
  for (const p of plugins) catalog.plugins.register(p.name, p);
  for (const name of ENCODER_NAMES) catalog.encoders.register(name, createEncoder);
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
      subsetTrain(
        loadImageFolder(root(data, 'images'), {
          decode: nativeImageDecoder(),
          size: data.imageSize,
          strict: data.strict,
        }),
        data.trainSubset,
      ),
    )
    .register('stl10-unlabeled', (data) =>
      subsetTrain(loadStl10(root(data, 'stl10'), { unlabeled: true }), data.trainSubset),
    );
  catalog.losses
    .register('infonce', () => new InfoNceLoss())
    .register('nt-xent', () => new NtXentLoss())
    .register('nce', ({ datasetSize }) => new NceLoss(datasetSize));
  for (const [name, f] of Object.entries(extra.losses ?? {})) catalog.losses.register(name, f);
  return catalog;
}
