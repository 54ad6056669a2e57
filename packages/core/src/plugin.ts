import { instanceCachingFactory, Lifecycle, type DependencyContainer } from 'tsyringe';
import type { z } from 'zod';
import type {
  Encoder,
  KeyEncoderPolicy,
  Loss,
  NegativeSource,
  NegativesKind,
  TrainingDataset,
} from './contracts.js';
import { Tokens } from './tokens.js';
import type { Registry } from './registry.js';
import type { Rng } from './rng.js';
import type { ExperimentConfig } from './schema.js';

/**
 * A plugin is a plain object from a factory. Its name is what experiment YAML
 * refers to (`strategy: { name: momentum-queue }`); its configSchema validates
 * that section; register() binds its parts in the experiment's child container,
 * where the parsed section is available as Tokens.StrategyConfig.
 * It must bind Tokens.NegativeSource, Tokens.KeyEncoderPolicy and a default Tokens.Loss.
 */
export interface Plugin<C = unknown> {
  readonly name: string;
  readonly description: string;
  readonly configSchema: z.ZodType<C, z.ZodTypeDef, unknown>;
  /** The negatives this strategy hands to the loss; losses of the other kind are refused. */
  readonly negatives: NegativesKind;
  register(container: DependencyContainer): void;
  /** Optional pre-flight checks against the whole experiment, before any training starts. */
  check?(context: { config: ExperimentConfig; strategy: C; dataset: TrainingDataset }): void;
}

export function definePlugin<C>(plugin: Plugin<C>): Plugin<C> {
  return plugin;
}

export interface EncoderSpec {
  model: ExperimentConfig['model'];
  input: { height: number; width: number; channels: number };
}

export type EncoderFactory = (spec: EncoderSpec, rng: Rng) => Encoder;
export type DatasetFactory = (data: ExperimentConfig['data']) => TrainingDataset;
/** What a loss may need to know about the experiment. */
export interface LossContext {
  /** Training samples (NCE's noise distribution is uniform over them). */
  datasetSize: number;
}

export type LossFactory = (context: LossContext) => Loss;

/** Everything a composition root can choose from, by name. */
export interface Catalog {
  plugins: Registry<Plugin>;
  encoders: Registry<EncoderFactory>;
  datasets: Registry<DatasetFactory>;
  losses: Registry<LossFactory>;
}

/**
 * The three bindings every strategy plugin makes, in one call: its NegativeSource
 * class (one per experiment container), its key-encoder policy and its default loss.
 */
export function bindStrategy(
  container: DependencyContainer,
  parts: {
    /** A class the container constructs (with @inject parameters), or a factory. */
    source:
      | // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tsyringe's own constructor type
        (new (...args: any[]) => NegativeSource)
      | { create: (c: DependencyContainer) => NegativeSource };
    keyEncoder: (c: DependencyContainer) => KeyEncoderPolicy;
    loss: () => Loss;
  },
): void {
  const { source } = parts;
  if ('create' in source) {
    container.register(Tokens.NegativeSource, {
      useFactory: instanceCachingFactory(source.create),
    });
  } else {
    container.register(
      Tokens.NegativeSource,
      { useClass: source },
      { lifecycle: Lifecycle.ContainerScoped },
    );
  }
  container.register(Tokens.KeyEncoderPolicy, {
    useFactory: instanceCachingFactory(parts.keyEncoder),
  });
  container.register(Tokens.Loss, { useValue: parts.loss() });
}
