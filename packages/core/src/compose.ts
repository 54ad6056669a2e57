import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import { z } from 'zod';
import {
  TrainingClock,
  type Augmentation,
  type Encoder,
  type LossKind,
  type TrainingDataset,
} from './contracts.js';
import { singleProcess, workerBnSplits, type Collectives } from './collectives.js';
import { parseWith, schemaKeys } from './config.js';
import { ConfigError, ContrastError, PluginError } from './errors.js';
import type { Method } from './method.js';
import { nearest } from './registry.js';
import {
  acceptedKinds,
  type AugmentationFactory,
  type BuildContext,
  type Catalog,
  type EncoderSpec,
  type LossEntry,
  type Plugin,
} from './plugin.js';
import { resolveOptimizer, type OptimizerFactory } from './optim.js';
import { Rng } from './rng.js';
import { ModelSchema, type ExperimentConfig } from './schema.js';
import { Tokens } from './tokens.js';
import { checkViews, checkViewSizes } from './views.js';

/** An experiment composed: its parts built, in the order composeExperiment documents. */
export interface Composition {
  container: DependencyContainer;
  plugin: Plugin;
  dataset: TrainingDataset;
  /**
   * The config as trained: `loss.name`, `loss.temperature`, `loss.symmetric`
   * and the loss's own options filled in from the defaults, the optimizer's own
   * `optim` fields from its defaults, `model` with the encoder's own options
   * parsed (defaults filled in). This is what a run records.
   */
  config: ExperimentConfig;
  /** The strategy section as the plugin's schema parsed it (defaults filled in). */
  options: unknown;
  encoder: Encoder;
  method: Method;
  /** Absent when no augmentation factory was given or provided. */
  augmentation: Augmentation | undefined;
  /** The data-order stream. */
  dataRng: Rng;
}

/**
 * Fails on any unknown name (strategy, encoder, dataset, loss, optimizer), on an
 * optimizer field the selected optimizer does not know, and on a loss
 * section the method refuses (a loss of another kind, an option the loss does
 * not know, a temperature for a method without one; resolveLoss), before
 * anything heavy is loaded. Returns the method's plugin.
 */
export function checkNames(config: ExperimentConfig, catalog: Catalog): Plugin {
  const plugin = catalog.plugins.get(config.strategy.name);
  resolveModel(config, catalog);
  catalog.datasets.get(config.data.dataset);
  if (config.loss.name !== undefined) catalog.losses.get(config.loss.name);
  resolveLoss(config, plugin, catalog);
  resolveOptimizer(config, catalog.optimizers);
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

const WHAT: Record<string, string> = {
  explicit: 'explicit negatives (a queue or a bank)',
  'in-batch': 'in-batch negatives',
  regression: 'a regression target (no negatives)',
};
const what = (kind: LossKind): string => WHAT[kind] ?? `a '${kind}' input`;

/** The fields of the `loss` section every loss has; the rest are the selected loss's options. */
const COMMON_LOSS_FIELDS = ['name', 'temperature', 'symmetric'] as const;

/**
 * The selected loss's own options, validated by its schema (defaults filled in).
 * @throws ConfigError naming `loss.<field>`: a field the loss does not know (with
 *   the loss whose option it is, when another has it, and the known fields), or a bad value.
 */
function lossOptions(
  name: string,
  entry: LossEntry,
  config: ExperimentConfig,
  catalog: Catalog,
): Record<string, unknown> {
  const rest: Record<string, unknown> = { ...config.loss };
  for (const f of COMMON_LOSS_FIELDS) delete rest[f];
  const schema = entry.options ?? z.object({}).strict();
  const own = schemaKeys(schema);
  const unknown = Object.keys(rest).find((k) => !own.includes(k));
  if (unknown !== undefined) {
    const known = [...COMMON_LOSS_FIELDS, ...own];
    const owners = catalog.losses
      .names()
      .filter(
        (n) =>
          n !== name && schemaKeys(catalog.losses.get(n).options ?? z.object({})).includes(unknown),
      );
    const near = nearest(unknown, known);
    throw new ConfigError(
      `loss.${unknown}`,
      owners.length > 0
        ? `is an option of ${owners.map((o) => `'${o}'`).join(', ')}, not of the selected loss '${name}'`
        : `is not a field of loss '${name}'`,
      { hint: `${near ? `did you mean '${near}'? ` : ''}'${name}' knows: ${known.join(', ')}` },
    );
  }
  const parsed = parseWith(schema, rest, 'loss');
  return (parsed ?? {}) as Record<string, unknown>;
}

/**
 * Fills the loss section from the plugin's defaults and checks it: the loss must
 * be of a kind the method accepts, its own options must be its own (validated
 * by its schema, defaults filled in), and a temperature is refused for methods
 * that have none (BYOL, SimSiam).
 * @throws ConfigError naming `loss.name` (with the acceptable losses), `loss.temperature`
 *   or `loss.<option>`.
 */
export function resolveLoss(
  config: ExperimentConfig,
  plugin: Plugin,
  catalog: Catalog,
): { config: ExperimentConfig; loss: LossEntry; options: Record<string, unknown> } {
  const name = config.loss.name ?? plugin.loss.default;
  const loss = catalog.losses.get(name);
  const kinds = acceptedKinds(plugin);
  if (!kinds.includes(loss.kind)) {
    const acceptable = catalog.losses
      .names()
      .filter((n) => kinds.includes(catalog.losses.get(n).kind));
    throw new ConfigError(
      'loss.name',
      `'${name}' needs ${what(loss.kind)} but method '${plugin.name}' provides ${kinds.map(what).join(' or ')}`,
      {
        hint: `use one of: ${acceptable.join(', ')} (or leave loss.name out for '${plugin.loss.default}')`,
      },
    );
  }
  const options = lossOptions(name, loss, config, catalog);
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
        ...options,
        name,
        symmetric,
        ...(temperature !== undefined ? { temperature } : {}),
      },
    },
    loss,
    options,
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

/** Options of composeExperiment. */
export interface ComposeOptions {
  dataset?: TrainingDataset;
  parent?: DependencyContainer;
  /** The default augmentation (a plugin's `provide` may replace it). */
  augmentation?: AugmentationFactory;
  /** The default optimizer (a plugin's `provide` may replace it); the trainer resolves it. */
  optimizer?: OptimizerFactory;
  /** What crosses workers in a data-parallel run (default: one process). */
  collectives?: Collectives;
}

/**
 * The sections each part checks against its own schema: the method's
 * (`strategy`), the encoder's (`model`), the loss's and the optimizer's, with
 * their defaults filled into the config a run records.
 */
function resolveSections(input: ExperimentConfig, plugin: Plugin, catalog: Catalog) {
  const strategy = parseWith(plugin.configSchema, input.strategy, 'strategy');
  const resolved = resolveLoss(resolveModel(input, catalog), plugin, catalog);
  const optim = resolveOptimizer(resolved.config, catalog.optimizers);
  return {
    strategy,
    config: optim.config,
    lossEntry: resolved.loss,
    lossOptions: resolved.options,
    optim,
  };
}

/**
 * The composition root: one tsyringe child container per experiment, built
 * from the parsed config. Every check (names, the plugin's config section, the
 * loss and its options, the plugin's own `check`, the dataset files) runs
 * before any weights exist. Then the defaults are registered by token, the
 * plugin's `provide` may replace them, and the parts are built eagerly in this
 * order, which fixes the forks of the main random stream (seeded by `seed`):
 *   1. the encoder (fork 1, through Tokens.EncoderFactory);
 *   2. the loss (no random draws);
 *   3. the method: `plugin.build(context)`, whose parts fork the main stream in
 *      the order the plugin asks (forks 2 .. k + 1 for k forks);
 *   4. the augmentation stream (fork k + 2, taken with or without a factory),
 *      then the augmentation from it through Tokens.AugmentationFactory;
 *   5. the data-order stream (fork k + 3).
 * The same order as before the parts were built eagerly (the session resolved
 * the method, then the augmentation, then forked the data order), so a seed
 * trains what it trained. Each built part is registered by token as a value.
 */
export function composeExperiment(
  input: ExperimentConfig,
  catalog: Catalog,
  options: ComposeOptions = {},
): Composition {
  const plugin = checkNames(input, catalog);
  const { strategy, config, lossEntry, lossOptions, optim } = resolveSections(
    input,
    plugin,
    catalog,
  );
  const dataset = options.dataset ?? loadedNow(config, catalog);
  const viewGroups = checkViews(config.data, dataset);
  withPlugin(plugin, 'check()', () => plugin.check?.({ config, method: strategy, dataset }));

  const rng = new Rng(config.seed);
  const clock = new TrainingClock();
  const collectives = options.collectives ?? singleProcess;
  const child = (options.parent ?? rootContainer).createChildContainer();
  child.register(Tokens.Config, { useValue: config });
  child.register(Tokens.Rng, { useValue: rng });
  child.register(Tokens.Dataset, { useValue: dataset });
  child.register(Tokens.Clock, { useValue: clock });
  child.register(Tokens.Collectives, { useValue: collectives });
  child.register(Tokens.EncoderFactory, {
    useValue: catalog.encoders.get(config.model.encoder).create,
  });
  if (options.augmentation) {
    child.register(Tokens.AugmentationFactory, { useValue: options.augmentation });
  }
  child.register(Tokens.OptimizerFactory, {
    useValue: options.optimizer ?? ((params) => optim.entry.create(params, optim.options)),
  });
  withPlugin(plugin, 'provide()', () => plugin.provide?.(child, strategy));

  // per-worker BN: this worker's share of the global batch's BatchNorm groups
  const bnSplits = workerBnSplits(config.model.bnSplits, collectives.worldSize);
  const encoderSpec: EncoderSpec = {
    model: { ...config.model, bnSplits },
    input: { height: dataset.height, width: dataset.width, channels: dataset.channels },
  };
  const createEncoder = child.resolve(Tokens.EncoderFactory);
  const encoder = createEncoder(encoderSpec, rng.fork()); // 1
  if (config.data.views) checkViewSizes(viewGroups, encoder, dataset);
  const loss = lossEntry.create({ datasetSize: dataset.train.n }, lossOptions); // 2
  child.register(Tokens.Encoder, { useValue: encoder }).register(Tokens.Loss, { useValue: loss });
  const context: BuildContext = {
    plugin: plugin.name,
    options: strategy,
    config,
    encoder,
    encoderSpec,
    createEncoder,
    loss,
    rng,
    clock,
    dataset,
    datasetSize: dataset.train.n,
    collectives,
    container: child,
  };
  child.register(Tokens.BuildContext, { useValue: context });
  const method = withPlugin(plugin, 'build()', () => plugin.build(context)); // 3
  child.register(Tokens.Method, { useValue: method });
  const augmentationRng = rng.fork(); // 4
  const augmentation = child.isRegistered(Tokens.AugmentationFactory)
    ? child.resolve(Tokens.AugmentationFactory)(config, dataset, augmentationRng)
    : undefined;
  if (augmentation) child.register(Tokens.Augmentation, { useValue: augmentation });
  const dataRng = rng.fork(); // 5
  child.register(Tokens.DataRng, { useValue: dataRng });
  return {
    container: child,
    plugin,
    dataset,
    config,
    options: strategy,
    encoder,
    method,
    augmentation,
    dataRng,
  };
}
