import type { DependencyContainer } from 'tsyringe';
import type { z } from 'zod';
import type { Encoder, Loss, TrainingDataset } from './contracts.js';
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
export type LossFactory = () => Loss;

/** Everything a composition root can choose from, by name. */
export interface Catalog {
  plugins: Registry<Plugin>;
  encoders: Registry<EncoderFactory>;
  datasets: Registry<DatasetFactory>;
  losses: Registry<LossFactory>;
}
