import type { InjectionToken } from 'tsyringe';
import type { Collectives } from './collectives.js';
import type { Augmentation, Encoder, Loss, TrainingClock, TrainingDataset } from './contracts.js';
import type { Method } from './method.js';
import type { OptimizerFactory } from './optim.js';
import type { AugmentationFactory, BuildContext, EncoderFactory } from './plugin.js';
import type { Rng } from './rng.js';
import type { ExperimentConfig } from './schema.js';

/**
 * The typed keys of an experiment's tsyringe container (composeExperiment).
 * Nothing here is constructed by tsyringe from decorator metadata: every entry
 * is registered as a value, built by composeExperiment in the order written in
 * its docstring, so resolving a token never builds anything and never draws
 * from a random stream. The three factories are the exception a plugin may
 * use: its `provide` registers its own under the same token before anything is
 * built, and composeExperiment (the optimizer: the trainer's session) calls
 * whichever is registered.
 */
export const Tokens = {
  /** The experiment's resolved config (loss name, temperature, symmetry and options filled in). */
  Config: Symbol('Config') as InjectionToken<ExperimentConfig>,
  /**
   * The experiment's main random stream (seeded by `seed`). Its forks, in
   * order: the encoder, the method's parts (as the plugin's build asks), the
   * augmentation, the data order. After composition nothing draws from it.
   */
  Rng: Symbol('Rng') as InjectionToken<Rng>,
  /** Builds the query encoder (default: the catalog's entry for `model.encoder`). */
  EncoderFactory: Symbol('EncoderFactory') as InjectionToken<EncoderFactory>,
  /** The query / online encoder (backbone + projection head): what is trained and evaluated. */
  Encoder: Symbol('Encoder') as InjectionToken<Encoder>,
  /** The loss the experiment selected (`loss.name` or the plugin's default). */
  Loss: Symbol('Loss') as InjectionToken<Loss>,
  /** What the plugin's build received. */
  BuildContext: Symbol('BuildContext') as InjectionToken<BuildContext>,
  /** The method the plugin built. */
  Method: Symbol('Method') as InjectionToken<Method>,
  /** Builds the augmentation (default: the trainer's; a plugin may provide its own, e.g. asymmetric). */
  AugmentationFactory: Symbol('AugmentationFactory') as InjectionToken<AugmentationFactory>,
  /** The two-view augmentation, built from the augmentation stream (absent when no factory was given). */
  Augmentation: Symbol('Augmentation') as InjectionToken<Augmentation>,
  /** The data-order stream (epoch permutations), forked after the augmentation's. */
  DataRng: Symbol('DataRng') as InjectionToken<Rng>,
  /**
   * Builds the optimizer over the method's parameters (default: the catalog's
   * `optim.optimizer` with its options; a plugin's `provide` may register its own).
   */
  OptimizerFactory: Symbol('OptimizerFactory') as InjectionToken<OptimizerFactory>,
  Dataset: Symbol('Dataset') as InjectionToken<TrainingDataset>,
  Clock: Symbol('Clock') as InjectionToken<TrainingClock>,
  /** What crosses workers (all-reduce, all-gather, broadcast); `singleProcess` on one process. */
  Collectives: Symbol('Collectives') as InjectionToken<Collectives>,
} as const;
