import type * as tf from '@tensorflow/tfjs';
import { MemoryBank, sampleIndices } from './bank.js';
import {
  Stateless,
  StoreBackedSource,
  type Keys,
  type KeysInput,
  type NegativeSource,
  type StateTensors,
} from './contracts.js';
import { PluginError } from './errors.js';
import { KeyQueue } from './queue.js';
import { Rng } from './rng.js';

/**
 * The negative sources of MoCo's Figure 2, shared by every method that needs one
 * (N = batch, D = embedding width, K = negatives).
 */

function requireKey(name: string, key: tf.Tensor2D | undefined, what: string): tf.Tensor2D {
  if (!key) {
    throw new PluginError(name, `${what} needs key embeddings from a key encoder`, {
      hint: 'compose it with a shared, stop-gradient or momentum key encoder',
    });
  }
  return key;
}

/**
 * Negatives from the batch itself: the positive is the key of the other view and
 * the loss takes the rest of the batch as negatives (SimCLR, MoCo v3). No state.
 */
export class BatchKeysSource extends Stateless implements NegativeSource {
  readonly afterStepReads = [] as const;

  constructor(readonly name: string) {
    super();
  }

  keys({ key }: KeysInput): Keys {
    return { positive: requireKey(this.name, key, 'in-batch negatives'), negatives: 'in-batch' };
  }
}

/**
 * MoCo's dictionary as a negative source (He et al. 2020): the positive is the
 * batch's key, the negatives are the K keys in a FIFO queue ([K, D]). The loss
 * sees the queue before this batch's keys are enqueued (enqueue is afterStep).
 */
export class QueueSource extends StoreBackedSource<KeyQueue> implements NegativeSource {
  readonly updatePhase = 'enqueue';
  readonly afterStepReads = ['key'] as const;

  /** K = `size` keys of width `dim`, initialised from `rng` (random unit rows). */
  constructor(
    readonly name: string,
    size: number,
    dim: number,
    rng: Rng,
  ) {
    super(new KeyQueue(size, dim, rng));
  }

  get queue(): KeyQueue {
    return this.store;
  }

  get negativesPerQuery(): number {
    return this.store.size;
  }

  keys({ key }: KeysInput): Keys {
    const positive = requireKey(this.name, key, 'a queue of keys');
    return { positive, negatives: this.queue.keys }; // l_pos: [N, 1], l_neg: [N, K]
  }

  afterStep({ key }: Parameters<NegativeSource['afterStep']>[0]): void {
    if (key) this.queue.enqueue(key);
  }
}

/** How a bank is read and written. */
export interface BankOptions {
  /** K: rows drawn as negatives each step (4096 in InstDisc's NCE). */
  negatives: number;
  /** Bank momentum: v <- normalise(m v + (1 - m) f); 0.5 in InstDisc. */
  momentum: number;
  /** Never draw the rows of the batch's own samples as negatives. */
  excludePositives: boolean;
}

/**
 * InstDisc's memory bank as a negative source (Wu et al. 2018; MoCo's Figure
 * 2b): the positive is the bank row of the sample's own index, a feature written
 * by the query encoder in an earlier epoch; K negatives [K, D] are drawn
 * uniformly from the bank each step (shared by the batch, and by both
 * directions of a two-way loss). After the step the batch's rows are rewritten
 * with the fresh query features; with a two-way loss each row once, towards the
 * mean of its two views' queries (MemoryBank.update). Needs sample indices.
 */
export class BankSource extends StoreBackedSource<MemoryBank> implements NegativeSource {
  readonly updatePhase = 'bank_write';
  readonly afterStepReads = ['query'] as const;
  private readonly rng: Rng;

  /** A bank of `size` rows of width `dim`; `rng` initialises it, then a fork of it draws negatives. */
  constructor(
    readonly name: string,
    private readonly options: BankOptions,
    size: number,
    dim: number,
    rng: Rng,
  ) {
    super(new MemoryBank(size, dim, rng.fork()));
    this.rng = rng.fork();
  }

  get bank(): MemoryBank {
    return this.store;
  }

  get negativesPerQuery(): number {
    return this.options.negatives;
  }

  /**
   * The positives (the batch's own rows) and K negatives drawn from a copy of
   * the negatives' stream: no side effect, so two calls in a step (a two-way
   * loss) see the same negatives and the stream moves on only in afterStep.
   */
  keys({ indices, indexArray, batchIndexArray }: KeysInput): Keys {
    const drawn = this.drawNegatives(new Rng(this.rng.getState()), batchIndexArray ?? indexArray);
    return { positive: this.bank.gather(indices), negatives: this.bank.gather(drawn) }; // [N, D], [K, D]
  }

  /** Advances the negatives' stream past this step's draw, then writes the batch's rows. */
  afterStep({ query, indexArray }: Parameters<NegativeSource['afterStep']>[0]): void {
    // indexArray is the whole batch's (each row twice with a two-way loss): the same set keys() excluded
    this.drawNegatives(this.rng, indexArray);
    this.bank.update(indexArray, query, this.options.momentum);
  }

  /** K rows drawn uniformly from `rng`, the batch's own rows excluded when the options say so. */
  private drawNegatives(rng: Rng, batch: Int32Array): Int32Array {
    const exclude = this.options.excludePositives ? batch : undefined;
    return sampleIndices(rng, this.bank.size, this.options.negatives, exclude);
  }

  /** The bank, and where the negatives' random stream stands (a resumed run draws the same negatives). */
  override state(): StateTensors {
    const s = super.state();
    return { tensors: s.tensors, values: { ...s.values, negatives_rng: this.rng.getState() } };
  }

  /** Restores the bank and, when the state has it (not in checkpoints before it was saved), the stream. */
  override loadState(state: StateTensors): void {
    super.loadState(state);
    const rng = state.values.negatives_rng;
    if (Array.isArray(rng)) this.rng.setState(rng);
  }
}
