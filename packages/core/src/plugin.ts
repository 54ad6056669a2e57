import { instanceCachingFactory, type DependencyContainer } from 'tsyringe';
import type { z } from 'zod';
import type {
  ContrastiveLoss,
  Encoder,
  Loss,
  LossKind,
  RegressionLoss,
  TrainingDataset,
} from './contracts.js';
import { PluginError } from './errors.js';
import type { Method } from './method.js';
import { Tokens } from './tokens.js';
import type { Registry } from './registry.js';
import type { Rng } from './rng.js';
import type { ExperimentConfig } from './schema.js';

/** What a loss may need to know about the experiment. */
export interface LossContext {
  /** Training samples (NCE's noise distribution is uniform over them). */
  datasetSize: number;
}

/** A named loss: its kind (what it consumes) and a factory (a fresh instance per experiment). */
export interface LossEntry {
  readonly kind: LossKind;
  create(context: LossContext): Loss;
}

/**
 * A method plugin: one complete unit a user can add without touching anything
 * else. Its `name` is what experiment YAML refers to (`strategy: { name: byol }`);
 * `configSchema` validates that section (strict zod, defaults quoting the paper)
 * and `register` receives it parsed and typed. `register` binds `Tokens.Method`
 * in the experiment's child container, where `Tokens.Encoder`, `Tokens.Loss`
 * (the loss the experiment selected, of the plugin's `loss.kind`), `Tokens.Rng`,
 * `Tokens.Clock`, `Tokens.Dataset`, `Tokens.Config` and `Tokens.Augmentation`
 * are available. Parts a method owns (a predictor, a key encoder, a queue) are
 * built there and reported by the method's `parameterGroups` and `state`.
 *
 * Errors: the composition root stamps the plugin's name on anything `check` or
 * `register` throws (PluginError) unless it is already a coded ContrastError.
 */
export interface Plugin<C = unknown> {
  readonly name: string;
  readonly description: string;
  readonly configSchema: z.ZodType<C, z.ZodTypeDef, unknown>;
  /** The method's loss: its defaults and the kind of loss it consumes. */
  readonly loss: {
    /** The loss used when `loss.name` is unset. */
    readonly default: string;
    readonly kind: LossKind;
    /**
     * tau used when `loss.temperature` is unset. Methods without a temperature
     * (BYOL, SimSiam) leave it out, and a temperature set for them is refused.
     */
    readonly temperature?: number;
    /** Whether the loss is two-way when `loss.symmetric` is unset (default false). */
    readonly symmetric?: boolean;
  };
  /** Named losses this plugin adds (any method of the same loss kind may then select them). */
  readonly losses?: Readonly<Record<string, LossEntry>>;
  /** Named encoders this plugin adds (`model.encoder` may then select them). */
  readonly encoders?: Readonly<Record<string, EncoderEntry>>;
  /** Pre-flight checks against the whole experiment, before anything is built or trained. */
  check?(context: { config: ExperimentConfig; method: C; dataset: TrainingDataset }): void;
  /** Binds Tokens.Method (use `bindMethod`). */
  register(container: DependencyContainer, config: C): void;
}

/** Identity with the plugin's config type inferred from its schema. */
export function definePlugin<C>(plugin: Plugin<C>): Plugin<C> {
  return plugin;
}

/** Binds the method a plugin builds, once per experiment container. */
export function bindMethod<P>(
  container: DependencyContainer,
  create: (c: DependencyContainer) => Method<P>,
): void {
  container.register(Tokens.Method, {
    useFactory: instanceCachingFactory((c) => create(c) as Method),
  });
}

/** The `model` section as an encoder sees it: the shared fields plus its own options, parsed. */
export interface EncoderSpec {
  model: ExperimentConfig['model'];
  input: { height: number; width: number; channels: number };
}

export type EncoderFactory = (spec: EncoderSpec, rng: Rng) => Encoder;

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
  return typeof (p as Partial<Plugin>).register === 'function';
}

/**
 * Makes a dataset from the data section. In-memory datasets return it
 * directly; streamed ones (an image folder) resolve once their index is read
 * and their evaluation images are decoded (load them with `loadDataset`).
 */
export type DatasetFactory = (
  data: ExperimentConfig['data'],
) => TrainingDataset | Promise<TrainingDataset>;

/** Everything a composition root can choose from, by name. */
export interface Catalog {
  plugins: Registry<Plugin>;
  encoders: Registry<EncoderEntry>;
  datasets: Registry<DatasetFactory>;
  losses: Registry<LossEntry>;
}

/**
 * The loss the experiment selected, as a regression loss (BYOL, SimSiam).
 * @throws PluginError when the selected loss is contrastive.
 */
export function regressionLoss(container: DependencyContainer, plugin: string): RegressionLoss {
  const loss = container.resolve(Tokens.Loss);
  if (loss.kind !== 'regression') {
    throw new PluginError(plugin, `'${loss.name}' is a contrastive loss; this method regresses`, {
      hint: "declare the plugin's loss.kind as 'regression'",
    });
  }
  return loss;
}

/**
 * The loss the experiment selected, as a contrastive loss.
 * @throws PluginError when the selected loss is a regression loss.
 */
export function contrastiveLoss(container: DependencyContainer, plugin: string): ContrastiveLoss {
  const loss = container.resolve(Tokens.Loss);
  if (loss.kind === 'regression') {
    throw new PluginError(plugin, `'${loss.name}' is a regression loss; this method contrasts`, {
      hint: "declare the plugin's loss.kind as 'explicit' or 'in-batch'",
    });
  }
  return loss;
}
