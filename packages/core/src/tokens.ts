import type { InjectionToken } from 'tsyringe';
import type {
  Augmentation,
  Encoder,
  Evaluator,
  KeyEncoderPolicy,
  Loss,
  NegativeSource,
  Tracker,
  TrainingClock,
  TrainingDataset,
} from './contracts.js';
import type { Rng } from './rng.js';
import type { ExperimentConfig } from './schema.js';

/**
 * Every injectable has one typed token here. Constructor parameters carry
 * `@inject(Tokens.X)` because the test runner does not emit decorator metadata.
 */
export const Tokens = {
  Config: Symbol('Config') as InjectionToken<ExperimentConfig>,
  /** The strategy section of the config, parsed by the plugin's own schema. */
  StrategyConfig: Symbol('StrategyConfig') as InjectionToken<unknown>,
  Rng: Symbol('Rng') as InjectionToken<Rng>,
  Encoder: Symbol('Encoder') as InjectionToken<Encoder>,
  KeyEncoderPolicy: Symbol('KeyEncoderPolicy') as InjectionToken<KeyEncoderPolicy>,
  NegativeSource: Symbol('NegativeSource') as InjectionToken<NegativeSource>,
  Loss: Symbol('Loss') as InjectionToken<Loss>,
  Augmentation: Symbol('Augmentation') as InjectionToken<Augmentation>,
  Dataset: Symbol('Dataset') as InjectionToken<TrainingDataset>,
  Tracker: Symbol('Tracker') as InjectionToken<Tracker>,
  Evaluator: Symbol('Evaluator') as InjectionToken<Evaluator>,
  Clock: Symbol('Clock') as InjectionToken<TrainingClock>,
} as const;
