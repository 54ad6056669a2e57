import {
  container as rootContainer,
  instanceCachingFactory,
  type DependencyContainer,
} from 'tsyringe';
import {
  TrainingClock,
  type Augmentation,
  type LossKind,
  type TrainingDataset,
} from './contracts.js';
import { singleProcess, workerBnSplits, type Collectives } from './collectives.js';
import { parseWith } from './config.js';
import { ConfigError, ContrastError, PluginError } from './errors.js';
import type { Method } from './method.js';
import type { Catalog, LossEntry, Plugin } from './plugin.js';
import { Rng } from './rng.js';
import { ModelSchema, type ExperimentConfig } from './schema.js';
import { Tokens } from './tokens.js';
import { checkViews } from './views.js';

export interface Composition {
  container: DependencyContainer;
  plugin: Plugin;
  dataset: TrainingDataset;
  /**
   * The config as trained: `loss.name`, `loss.temperature` and `loss.symmetric`
   * filled in from the plugin's defaults, `model` with the encoder's own options
   * parsed (defaults filled in). This is what a run records.
   */
  config: ExperimentConfig;
  /** The strategy section as the plugin's schema parsed it (defaults filled in). */
  method: unknown;
}

/** Makes the augmentation of an experiment from its config, dataset and a random stream. */
export type AugmentationFactory = (
  config: ExperimentConfig,
  dataset: TrainingDataset,
  rng: Rng,
) => Augmentation;

/** Fails on any unknown name (strategy, encoder, dataset, loss) before anything heavy is loaded. */
export function checkNames(config: ExperimentConfig, catalog: Catalog): Plugin {
  const plugin = catalog.plugins.get(config.strategy.name);
  resolveModel(config, catalog);
  catalog.datasets.get(config.data.dataset);
  if (config.loss.name !== undefined) catalog.losses.get(config.loss.name);
  return plugin;
}

/**
 * The `model` section checked against its encoder: the shared fields plus the
 * encoder's own options (its registry entry's schema), defaults filled in. This
 * is what the encoder is built from and what a run records.
 * @throws UnknownNameError for an unknown `model.encoder` (listing the known ones);
 * ConfigError naming `model.<field>` for a field the encoder does not know (listing the known ones)
 * or an invalid value.
 */
export function resolveModel(config: ExperimentConfig, catalog: Catalog): ExperimentConfig {
  const entry = catalog.encoders.get(config.model.encoder);
  const schema = ModelSchema.merge(entry.optionsSchema).strict();
  const model = parseWith(schema, config.model, 'model') as ExperimentConfig['model'];
  return { ...config, model };
}

const WHAT: Record<LossKind, string> = {
  explicit: 'explicit negatives (a queue or a bank)',
  'in-batch': 'in-batch negatives',
  regression: 'a regression target (no negatives)',
};

/**
 * Fills the loss section from the plugin's defaults and checks it: the loss must
 * be of the kind the method consumes, and a temperature is refused for methods
 * that have none (BYOL, SimSiam).
 * @throws ConfigError naming `loss.name` (with the compatible losses) or `loss.temperature`.
 */
export function resolveLoss(
  config: ExperimentConfig,
  plugin: Plugin,
  catalog: Catalog,
): { config: ExperimentConfig; loss: LossEntry } {
  const name = config.loss.name ?? plugin.loss.default;
  const loss = catalog.losses.get(name);
  if (loss.kind !== plugin.loss.kind) {
    const compatible = catalog.losses
      .names()
      .filter((n) => catalog.losses.get(n).kind === plugin.loss.kind);
    throw new ConfigError(
      'loss.name',
      `'${name}' needs ${WHAT[loss.kind]} but method '${plugin.name}' provides ${WHAT[plugin.loss.kind]}`,
      {
        hint: `use one of: ${compatible.join(', ')} (or leave loss.name out for '${plugin.loss.default}')`,
      },
    );
  }
  if (plugin.loss.temperature === undefined && config.loss.temperature !== undefined) {
    throw new ConfigError('loss.temperature', `'${plugin.name}' has no temperature`, {
      hint: 'remove loss.temperature (it applies to contrastive methods only)',
    });
  }
  const temperature = config.loss.temperature ?? plugin.loss.temperature;
  const symmetric = config.loss.symmetric ?? plugin.loss.symmetric ?? false;
  return {
    config: {
      ...config,
      loss: {
        ...config.loss,
        name,
        symmetric,
        ...(temperature !== undefined ? { temperature } : {}),
      },
    },
    loss,
  };
}

/** Runs a plugin hook, stamping the plugin's name on anything that is not already a coded error. */
function withPlugin<T>(plugin: Plugin, what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ContrastError) throw e;
    throw new PluginError(plugin.name, `${what} failed: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * The experiment's dataset, loaded: in-memory datasets at once, streamed ones
 * (an image folder: index read, evaluation images decoded) when they resolve.
 * Pass the result to composeExperiment / createSession as `dataset`.
 */
export async function loadDataset(
  config: ExperimentConfig,
  catalog: Catalog,
): Promise<TrainingDataset> {
  return catalog.datasets.get(config.data.dataset)(config.data);
}

/** A dataset that loads synchronously; a streamed one must come through loadDataset. */
function loadedNow(config: ExperimentConfig, catalog: Catalog): TrainingDataset {
  const dataset = catalog.datasets.get(config.data.dataset)(config.data);
  if (dataset instanceof Promise) {
    dataset.catch(() => {}); // reported below, not as an unhandled rejection
    throw new ConfigError(
      'data.dataset',
      `'${config.data.dataset}' loads asynchronously (it reads an index and decodes images)`,
      { hint: 'load it first with loadDataset(config, catalog) and pass it as the dataset' },
    );
  }
  return dataset;
}

/**
 * The composition root: one tsyringe child container per experiment, built
 * from the parsed config. Every check (names, the plugin's config section, the
 * loss, the plugin's own `check`, the dataset files) runs before any weights
 * exist. Random streams are forked in a fixed order: the encoder first, then the
 * method's parts as the plugin builds them, then the augmentation (when first
 * resolved), so a run is reproducible from its seed.
 */
export function composeExperiment(
  input: ExperimentConfig,
  catalog: Catalog,
  options: {
    dataset?: TrainingDataset;
    parent?: DependencyContainer;
    augmentation?: AugmentationFactory;
    /** What crosses workers in a data-parallel run (default: one process). */
    collectives?: Collectives;
  } = {},
): Composition {
  const plugin = checkNames(input, catalog);
  const method = parseWith(plugin.configSchema, input.strategy, 'strategy');
  const { config, loss } = resolveLoss(resolveModel(input, catalog), plugin, catalog);
  const dataset = options.dataset ?? loadedNow(config, catalog);
  checkViews(config.data, dataset);
  withPlugin(plugin, 'check()', () => plugin.check?.({ config, method, dataset }));

  const rng = new Rng(config.seed);
  const child = (options.parent ?? rootContainer).createChildContainer();
  child.register(Tokens.Config, { useValue: config });
  child.register(Tokens.Rng, { useValue: rng });
  child.register(Tokens.Dataset, { useValue: dataset });
  child.register(Tokens.Clock, { useValue: new TrainingClock() });
  const collectives = options.collectives ?? singleProcess;
  child.register(Tokens.Collectives, { useValue: collectives });
  const { height, width, channels } = dataset;
  // per-worker BN: this worker's share of the global batch's BatchNorm groups
  const bnSplits = workerBnSplits(config.model.bnSplits, collectives.worldSize);
  const encoder = catalog.encoders
    .get(config.model.encoder)
    .create(
      { model: { ...config.model, bnSplits }, input: { height, width, channels } },
      rng.fork(),
    );
  child.register(Tokens.Encoder, { useValue: encoder });
  child.register(Tokens.Loss, { useValue: loss.create({ datasetSize: dataset.train.n }) });
  const augmentation = options.augmentation;
  if (augmentation) {
    child.register(Tokens.Augmentation, {
      useFactory: instanceCachingFactory(() => augmentation(config, dataset, rng.fork())),
    });
  }
  withPlugin(plugin, 'register()', () => plugin.register(child, method));
  if (!child.isRegistered(Tokens.Method)) {
    throw new PluginError(plugin.name, 'register() did not bind Tokens.Method', {
      hint: 'call bindMethod(container, (c) => new YourMethod(...)) in register()',
    });
  }
  return { container: child, plugin, dataset, config, method };
}

/** The method of a composition (built on first resolution: its parts fork the Rng then). */
export function resolveMethod(container: DependencyContainer, plugin: Plugin): Method {
  return withPlugin(plugin, 'building the method', () => container.resolve(Tokens.Method));
}
