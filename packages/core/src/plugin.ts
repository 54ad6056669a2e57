import type { DependencyContainer } from 'tsyringe';
import type { z } from 'zod';
import type { Collectives } from './collectives.js';
import type {
  Augmentation,
  ContrastiveLoss,
  Encoder,
  Loss,
  LossKind,
  RegressionLoss,
  TrainingClock,
  TrainingDataset,
} from './contracts.js';
import { PluginError } from './errors.js';
import type { Method } from './method.js';
import type { OptimizerEntry } from './optim.js';
import type { Registry } from './registry.js';
import type { Rng } from './rng.js';
import type { ExperimentConfig } from './schema.js';

/** What a loss may need to know about the experiment. */
export interface LossContext {
  /** Training samples (NCE's noise distribution is uniform over them). */
  datasetSize: number;
}

/**
 * A named loss: its kind (what its `compute` takes), its own options and a
 * factory (a fresh instance per experiment). The options are the fields of the
 * experiment's `loss` section besides `name`, `temperature` and `symmetric`
 * (`loss: { name: barlow-twins, lambda: 0.005 }`), validated by `options` (a
 * strict zod object whose defaults quote the paper); a loss without `options`
 * takes none, and a field it does not know is refused naming the field.
 */
export interface LossEntry<O = unknown> {
  readonly kind: LossKind;
  readonly options?: z.ZodType<O, z.ZodTypeDef, unknown>;
  create(context: LossContext, options: O): Loss;
}

/** Identity with the loss's options type inferred from its schema. */
export function defineLoss<O>(entry: LossEntry<O>): LossEntry<O> {
  return entry;
}

/** What the builder of an encoder is told: the model section and the input's shape. */
export interface EncoderSpec {
  model: ExperimentConfig['model'];
  input: { height: number; width: number; channels: number };
}

/** Builds an encoder (backbone + projection head) from a spec, its weights drawn from `rng`. */
export type EncoderFactory = (spec: EncoderSpec, rng: Rng) => Encoder;

/** Makes the augmentation of an experiment from its config, dataset and a random stream. */
export type AugmentationFactory = (
  config: ExperimentConfig,
  dataset: TrainingDataset,
  rng: Rng,
) => Augmentation;

/**
 * A method of any prepared type: what `prepare` hands `objective` and
 * `afterStep` is the method's own business (MyMethod's `{ key }`).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each method's own type, unseen outside it
export type AnyMethod = Method<any>;

/**
 * Everything a plugin builds its method from, built before it in a fixed order
 * (see composeExperiment). `rng` is the experiment's main random stream: each
 * part the method owns takes `rng.fork()`, in the order `build` asks, which is
 * part of the run's reproducibility (a new fork placed before an old one
 * changes the old one's draws).
 */
export interface BuildContext<C = unknown> {
  /** The plugin's name (stamped on the errors of the helpers below). */
  readonly plugin: string;
  /** The strategy section as the plugin's schema parsed it (defaults filled in). */
  readonly options: C;
  /** The resolved config: `loss.name`, `loss.temperature`, `loss.symmetric` and the loss's options filled in. */
  readonly config: ExperimentConfig;
  /** The query / online encoder (backbone + projection head): what is trained and evaluated. */
  readonly encoder: Encoder;
  /** The spec `encoder` was built from (what a second encoder of the same shape is built from). */
  readonly encoderSpec: EncoderSpec;
  /** Builds another encoder (a teacher of another size, ...) with the experiment's encoder factory. */
  readonly createEncoder: EncoderFactory;
  /** The loss the experiment selected, of one of the kinds the plugin accepts. */
  readonly loss: Loss;
  /** The experiment's main random stream, after the encoder's fork: `fork()` one per part. */
  readonly rng: Rng;
  /** Where training stands: schedules (cosine momentum) read it. */
  readonly clock: TrainingClock;
  readonly dataset: TrainingDataset;
  /** Training samples on this worker's view of the data (a memory bank's rows). */
  readonly datasetSize: number;
  /** What crosses workers (`singleProcess` on one process). */
  readonly collectives: Collectives;
  /** The experiment's container, to resolve a token a plugin provided itself. */
  readonly container: DependencyContainer;
}

/**
 * A method plugin: one complete unit a user can add without touching anything
 * else. Its `name` is what experiment YAML refers to (`strategy: { name: byol }`);
 * `configSchema` validates that section (strict zod, defaults quoting the paper)
 * and `build` receives it parsed and typed in a BuildContext, and returns the
 * method. Parts a method owns (a predictor, a key encoder, a queue) are built
 * there and reported by the method's `parameterGroups` and `state`.
 *
 * Errors: the composition root stamps the plugin's name on anything `check`,
 * `provide` or `build` throws (PluginError) unless it is already a coded ContrastError.
 */
export interface Plugin<C = unknown> {
  readonly name: string;
  readonly description: string;
  readonly configSchema: z.ZodType<C, z.ZodTypeDef, unknown>;
  /** The method's loss: its defaults and the kinds of loss it accepts. */
  readonly loss: {
    /** The loss used when `loss.name` is unset. */
    readonly default: string;
    /** The kind (or kinds) of loss the method consumes; a loss of another kind is refused. */
    readonly kind: LossKind | readonly LossKind[];
    /**
     * tau used when `loss.temperature` is unset. Methods without a temperature
     * (BYOL, SimSiam) leave it out, and a temperature set for them is refused.
     */
    readonly temperature?: number;
    /** Whether the loss is two-way when `loss.symmetric` is unset (default false). */
    readonly symmetric?: boolean;
  };
  /** Named losses this plugin adds (any method accepting their kind may then select them). */
  readonly losses?: Readonly<Record<string, LossEntry>>;
  /** Named optimizers this plugin adds (any experiment may then select them in `optim.optimizer`). */
  readonly optimizers?: Readonly<Record<string, OptimizerEntry>>;
  /** Named encoders this plugin adds (`model.encoder` may then select them). */
  readonly encoders?: Readonly<Record<string, EncoderEntry>>;
  /** Pre-flight checks against the whole experiment, before anything is built or trained. */
  check?(context: { config: ExperimentConfig; method: C; dataset: TrainingDataset }): void;
  /**
   * Parts the plugin provides in place of the experiment's, registered by
   * token in the experiment's container before anything is built:
   * `Tokens.EncoderFactory`, `Tokens.AugmentationFactory`, `Tokens.OptimizerFactory`
   * (e.g. `container.register(Tokens.AugmentationFactory, { useValue: asymmetric })`).
   */
  provide?(container: DependencyContainer, config: C): void;
  /** Builds the method from the experiment's parts. */
  build(context: BuildContext<C>): AnyMethod;
}

/** Identity with the plugin's config type inferred from its schema. */
export function definePlugin<C>(plugin: Plugin<C>): Plugin<C> {
  return plugin;
}

/** Everything a composition root can choose from, by name. */
export interface Catalog {
  plugins: Registry<Plugin>;
  encoders: Registry<EncoderEntry>;
  datasets: Registry<DatasetFactory>;
  losses: Registry<LossEntry>;
  optimizers: Registry<OptimizerEntry>;
}

/**
 * A named encoder: its own options (the `model` fields besides the shared ones:
 * encoder, head, hiddenDim, headLayers, headOutputBn, dim, bnSplits), validated
 * like a strategy's section (a strict zod object, defaults filled in), and a
 * factory that receives the `model` section with them parsed.
 */
export interface EncoderEntry {
  readonly description: string;
  /** A strict zod object of the encoder's own `model` fields (none: `z.object({}).strict()`). */
  readonly optionsSchema: z.AnyZodObject;
  readonly create: EncoderFactory;
}

/**
 * A plugin that only adds encoders (no method): listed under `plugins:` like a
 * method plugin, its encoders are then selectable as `model.encoder`.
 */
export interface EncoderPlugin {
  readonly name: string;
  readonly description: string;
  readonly encoders: Readonly<Record<string, EncoderEntry>>;
}

/** Whether a plugin defines a method (a strategy) or only adds encoders. */
export function isMethodPlugin(p: Plugin | EncoderPlugin): p is Plugin {
  return typeof (p as Partial<Plugin>).build === 'function';
}

/**
 * Makes a dataset from the data section. In-memory datasets return it
 * directly; streamed ones (an image folder) resolve once their index is read
 * and their evaluation images are decoded (load them with `loadDataset`).
 */
export type DatasetFactory = (
  data: ExperimentConfig['data'],
) => TrainingDataset | Promise<TrainingDataset>;

/** The kinds a plugin accepts, as a list. */
export function acceptedKinds(plugin: Pick<Plugin, 'loss'>): readonly LossKind[] {
  const { kind } = plugin.loss;
  return typeof kind === 'string' ? [kind] : kind;
}

/**
 * The selected loss, as one of `kinds` (a loss of a plugin's own kind: give
 * its interface as L). The composition root has already refused a loss of a
 * kind the plugin does not accept; this guards a plugin that accepts several.
 * @throws PluginError when the loss is of another kind.
 */
export function lossOfKind<L extends Loss>(
  context: Pick<BuildContext, 'loss' | 'plugin'>,
  kinds: readonly LossKind[],
): L {
  const { loss, plugin } = context;
  if (!kinds.includes(loss.kind)) {
    throw new PluginError(
      plugin,
      `'${loss.name}' is a '${loss.kind}' loss; this needs ${kinds.map((k) => `'${k}'`).join(' or ')}`,
      {
        hint: `declare the plugin's loss.kind as ${kinds.map((k) => `'${k}'`).join(' or ')}`,
      },
    );
  }
  return loss as L;
}

/**
 * The selected loss, as a regression loss (BYOL, SimSiam).
 * @throws PluginError when the selected loss is of another kind.
 */
export function regressionLoss(context: Pick<BuildContext, 'loss' | 'plugin'>): RegressionLoss {
  return lossOfKind<RegressionLoss>(context, ['regression']);
}

/**
 * The selected loss, as a contrastive loss (explicit or in-batch negatives).
 * @throws PluginError when the selected loss is of another kind.
 */
export function contrastiveLoss(context: Pick<BuildContext, 'loss' | 'plugin'>): ContrastiveLoss {
  return lossOfKind<ContrastiveLoss>(context, ['explicit', 'in-batch']);
}
