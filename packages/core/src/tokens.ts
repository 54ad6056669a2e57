import type { InjectionToken } from 'tsyringe';
import type { Collectives } from './collectives.js';
import type { Augmentation, Encoder, Loss, TrainingClock, TrainingDataset } from './contracts.js';
import type { Method } from './method.js';
import type { OptimizerFactory } from './optim.js';
import type { Rng } from './rng.js';
import type { ExperimentConfig } from './schema.js';

/**
 * Every injectable has one typed token here. Constructor parameters carry
 * `@inject(Tokens.X)` because the test runner does not emit decorator metadata.
 */
export const Tokens = {
  /** The experiment's resolved config. */
  Config: Symbol('Config') as InjectionToken<ExperimentConfig>,
  /** The experiment's seeded random stream; parts take `fork()`s of it in a fixed order. */
  Rng: Symbol('Rng') as InjectionToken<Rng>,
  /** The query / online encoder (backbone + projection head): what is trained and evaluated. */
  Encoder: Symbol('Encoder') as InjectionToken<Encoder>,
  /** The loss the experiment selected (`loss.name` or the plugin's default). */
  Loss: Symbol('Loss') as InjectionToken<Loss>,
  /** The method the plugin built (bound by `Plugin.register`). */
  Method: Symbol('Method') as InjectionToken<Method>,
  /** The two-view augmentation (a plugin may bind its own, e.g. an asymmetric pipeline). */
  Augmentation: Symbol('Augmentation') as InjectionToken<Augmentation>,
  Dataset: Symbol('Dataset') as InjectionToken<TrainingDataset>,
  Clock: Symbol('Clock') as InjectionToken<TrainingClock>,
  /** What crosses workers (all-reduce, all-gather, broadcast); `singleProcess` on one process. */
  Collectives: Symbol('Collectives') as InjectionToken<Collectives>,
  /** Builds the optimizer `optim.optimizer` names, with its options (a plugin may bind its own). */
  Optimizer: Symbol('Optimizer') as InjectionToken<OptimizerFactory>,
} as const;
