import type * as tf from '@tensorflow/tfjs';

/**
 * The swappable parts of a contrastive method. Shapes in comments:
 * N = batch, D = embedding dim, K = negatives, F = pooled feature dim.
 */

/** A query encoder: backbone + projection head. */
export interface Encoder {
  readonly name: string;
  /** F: width of the pooled backbone features (what kNN and linear probes use). */
  readonly featureDim: number;
  /** D: width of the L2-normalised embedding the loss sees. */
  readonly embedDim: number;
  /** Pooled backbone features [N, F]. `training` selects batch vs running BN statistics. */
  features(x: tf.Tensor4D, training: boolean): tf.Tensor2D;
  /** The projection head's output [N, D], not normalised (a predictor's input: BYOL, SimSiam, MoCo v3). */
  project(x: tf.Tensor4D, training: boolean): tf.Tensor2D;
  /** L2-normalised projection [N, D]: l2Normalize(project(x)). */
  embed(x: tf.Tensor4D, training: boolean): tf.Tensor2D;
  /**
   * The projection head alone on pooled features [N, F] -> [N, D], not normalised:
   * project(x) = projectFeatures(features(x)). What runs the head once over crops
   * the backbone saw in several batches (SwAV's multi-crop forward). Optional for
   * encoders a plugin adds.
   */
  projectFeatures?(features: tf.Tensor2D, training: boolean): tf.Tensor2D;
  /**
   * The parameters (weights, BN scale and offset), in a fixed order shared by
   * clones: what the optimizer trains and what an EMA copy follows.
   */
  parameters(): tf.Variable[];
  /**
   * The parameters `features` depends on (the backbone's, without the projection
   * head's), in `parameters()` order: what a method training its own head on
   * the features (DINO) trains of the encoder. Optional for encoders a plugin adds.
   */
  backboneParameters?(): tf.Variable[];
  /** All state by stable name, BN running statistics included. */
  namedVariables(): ReadonlyMap<string, tf.Variable>;
  /** A structurally identical copy with its own variables holding the same values. */
  clone(options: { trainable: boolean }): Encoder;
  dispose(): void;
}

/**
 * How keys are encoded: by the query encoder itself with gradient (end-to-end),
 * by an EMA copy without gradient (MoCo, BYOL's target), by the query encoder
 * without gradient (stop-gradient keys), or not at all (memory bank).
 */
export interface KeyEncoderPolicy {
  /** True when key embeddings are computed inside the gradient tape (with gradient). */
  readonly withGradient: boolean;
  /** The EMA momentum m of the step about to run (momentum key encoders only). */
  readonly currentMomentum?: number;
  /** The name of the phase its afterStep runs in ('ema'), when it has work there. */
  readonly updatePhase?: string;
  /** Key embeddings [N, D], L2-normalised; undefined when there is no key encoder. */
  encode(xKey: tf.Tensor4D): tf.Tensor2D | undefined;
  /** Called once after the optimizer step (EMA update). */
  afterStep(): void;
  state(): StateTensors;
  loadState(state: StateTensors): void;
  dispose(): void;
}

/** Negatives for the loss: an explicit [K, D] matrix, or the other samples of the batch. */
export type Negatives = tf.Tensor2D | 'in-batch';

export interface KeysInput {
  /** [N, D] query embeddings (with gradient). */
  query: tf.Tensor2D;
  /** [N, D] key embeddings from the key-encoder policy, if it has one. */
  key: tf.Tensor2D | undefined;
  /** [N] dataset indices of the samples in the batch. */
  indices: tf.Tensor1D;
  /** The same indices on the host (for sampling without a device read). */
  indexArray: Int32Array;
  /**
   * Data-parallel: the indices of the whole global batch (every worker's rows,
   * in rank order), so a part that must act on the batch (a bank excluding the
   * batch's own rows from its negatives) acts as one process would. Absent on
   * one process, where it equals `indexArray`.
   */
  batchIndexArray?: Int32Array;
}

export interface Keys {
  /** [N, D] positive key per query. */
  positive: tf.Tensor2D;
  negatives: Negatives;
}

/** Where negatives (and the positive key) come from: queue, bank or batch. */
export interface NegativeSource {
  readonly name: string;
  /** The name of the phase its afterStep runs in ('enqueue', 'bank_write'), when it has work there. */
  readonly updatePhase?: string;
  /** K: explicit negatives per query (queue or bank); undefined for in-batch negatives. */
  readonly negativesPerQuery?: number;
  /** Inside the gradient tape. Must not mutate state: updates happen in afterStep. */
  keys(input: KeysInput): Keys;
  /**
   * What afterStep reads of its input; data-parallel runs gather only these
   * from every worker (absent: all three). MoCo's queue reads the keys, a bank
   * the queries (its rows come from `indexArray`, which is the whole batch's
   * on every worker), in-batch negatives nothing.
   */
  readonly afterStepReads?: readonly ('query' | 'key' | 'indices')[];
  /**
   * After the optimizer step: enqueue, bank write. `query` and `key` are the
   * batch's embeddings [M, D] as values (M = N, or 2N with a symmetric loss);
   * `key` is undefined only when there is no key encoder.
   */
  afterStep(input: {
    query: tf.Tensor2D;
    key: tf.Tensor2D | undefined;
    indices: tf.Tensor1D;
    indexArray: Int32Array;
  }): void;
  state(): StateTensors;
  loadState(state: StateTensors): void;
  dispose(): void;
}

/**
 * The kind of loss a method consumes, i.e. what the loss's `compute` takes. The
 * built-in kinds: contrastive against 'explicit' negatives (a queue or bank,
 * [K, D]), contrastive against the batch ('in-batch'), or a 'regression' of a
 * prediction onto a target without negatives (BYOL, SimSiam). The set is open:
 * a plugin's loss may declare a kind of its own ('paired' for a loss of two
 * embeddings, Barlow Twins' or VICReg's) with its own input type, and a
 * method names the kinds it accepts.
 */
export type LossKind = 'explicit' | 'in-batch' | 'regression' | (string & {});

export interface ContrastiveLossInput {
  /** [N, D] L2-normalised queries (with gradient). */
  query: tf.Tensor2D;
  /** [N, D] L2-normalised positive key per query. */
  positive: tf.Tensor2D;
  negatives: Negatives;
  /** tau: logits are similarities / tau. */
  temperature: number;
  /**
   * Data-parallel, in-batch losses only: every worker's queries and positives
   * [B, D] (B = the global batch, rank order, gathered with gradient), of which
   * `query` / `positive` are rows start .. start + N. An in-batch loss takes
   * its negatives from these, so N workers compute what one process computes
   * on the whole batch. Absent on one process.
   */
  batch?: { query: tf.Tensor2D; positive: tf.Tensor2D; start: number };
}

export interface ContrastiveLossOutput {
  loss: tf.Scalar;
  /** Top-1 accuracy of the pretext task: the positive ranks first among its candidates. */
  accuracy: tf.Scalar;
}

export interface RegressionLossInput {
  /** [N, D] predictions (with gradient), not necessarily normalised. */
  prediction: tf.Tensor2D;
  /** [N, D] targets (no gradient: a momentum target or a stop-gradient branch). */
  target: tf.Tensor2D;
}

/**
 * What every loss is: a name, a kind (what its `compute` takes, see LossKind),
 * and optionally state. The kinds' own interfaces (ContrastiveLoss,
 * RegressionLoss, or a plugin's) add `compute`.
 */
export interface Loss {
  readonly name: string;
  readonly kind: LossKind;
  /** Losses with state (NCE's normaliser) save and restore it. */
  state?(): StateTensors;
  loadState?(state: StateTensors): void;
}

export interface ContrastiveLoss extends Loss {
  readonly kind: 'explicit' | 'in-batch';
  compute(input: ContrastiveLossInput): ContrastiveLossOutput;
  /**
   * The loss when the embeddings carry no information (all similarities equal):
   * log(K + 1) for InfoNCE with K negatives; undefined when it has no closed form.
   */
  chance?(input: {
    negatives?: number | undefined;
    batchSize: number;
    temperature: number;
  }): number | undefined;
}

export interface RegressionLoss extends Loss {
  readonly kind: 'regression';
  compute(input: RegressionLossInput): { loss: tf.Scalar };
}

/**
 * A head on top of an embedding (a predictor: BYOL, SimSiam, MoCo v3), owned by
 * the method that declares it; its variables are trained and checkpointed with it.
 */
export interface Head {
  readonly inDim: number;
  readonly outDim: number;
  /** [N, inDim] -> [N, outDim]; `training` selects batch vs running BN statistics. */
  apply(x: tf.Tensor2D, training: boolean): tf.Tensor2D;
  parameters(): tf.Variable[];
  namedVariables(): ReadonlyMap<string, tf.Variable>;
  dispose(): void;
}

/** Something that saves, restores and releases state (a queue, a bank, a source). */
export interface Stateful {
  state(): StateTensors;
  loadState(state: StateTensors): void;
  dispose(): void;
}

/** A part with no state of its own (in-batch negatives, shared or absent key encoders). */
export abstract class Stateless implements Stateful {
  afterStep(): void {}
  state(): StateTensors {
    return { tensors: {}, values: {} };
  }
  loadState(): void {}
  dispose(): void {}
}

/**
 * A NegativeSource whose whole state is one component (MoCo's queue, InstDisc's
 * bank): state, loadState and dispose delegate to it, so sources share one state API.
 */
export abstract class StoreBackedSource<S extends Stateful> implements Stateful {
  constructor(protected readonly store: S) {}
  state(): StateTensors {
    return this.store.state();
  }
  loadState(state: StateTensors): void {
    this.store.loadState(state);
  }
  dispose(): void {
    this.store.dispose();
  }
}

/** Named tensors plus small JSON values: what strategies and key encoders save. */
export interface StateTensors {
  tensors: Record<string, tf.Tensor>;
  values: Record<string, number | string | number[]>;
}

export interface ImageSplit {
  /** uint8 pixels, NHWC. */
  images: Uint8Array;
  labels: Uint8Array;
  n: number;
}

/**
 * Training images streamed from disk (an image folder or file list of any
 * size): sample i is entry i of the dataset's index, and only the index is held
 * in memory. A batch's images are decoded when the batch stream needs them
 * (`streamedTwoViewBatches` in @contrast/data), off the main thread.
 */
export interface StreamedSplit {
  readonly kind: 'streamed';
  /** Samples per epoch (the index's training entries). */
  readonly n: number;
  /** Label of each sample; 255 = unlabelled. */
  readonly labels: Uint8Array;
  /**
   * Decodes sample `index` (0 <= index < n) to uint8 HWC pixels of the
   * dataset's height x width x channels. Rejects when the file is unreadable.
   */
  read(index: number): Promise<Uint8Array>;
  /** The file behind sample `index`, for messages. */
  file(index: number): string;
  /** Unreadable files met so far (skipped and counted; data.strict refuses them instead). */
  readonly skipped: Set<string>;
  /** Fail on the first unreadable file instead of skipping it. */
  readonly strict: boolean;
}

/** An image dataset held in memory with its official split; every sample has an index. */
export interface TrainingDataset {
  readonly name: string;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly numClasses: number;
  /** Per-channel normalisation statistics on [0, 1] pixels. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
  /** Whether samples carry a stable index (required by index-keyed strategies). */
  readonly providesIndices: boolean;
  /** The pre-training images: held in memory, or streamed from disk (see isStreamed). */
  readonly train: ImageSplit | StreamedSplit;
  /** Held-out images: kNN and the linear probe evaluate on them; alignment/uniformity too. */
  readonly test: ImageSplit;
  /**
   * The labeled split kNN and linear probes fit on, when `train` holds unlabeled
   * pre-training images (STL-10's unlabeled split) or is streamed; default `train`.
   */
  readonly evalTrain?: ImageSplit;
  /**
   * Set when kNN and the linear probe cannot run (no labelled bank or test
   * split): why, and the fix. They are then skipped with this note.
   */
  readonly unlabelled?: string;
  /** Where the data came from (a path or URL) and a digest of its content, for trackers. */
  readonly source?: string;
  readonly digest?: string;
}

/** A dataset whose training split is held in memory (Fashion-MNIST, CIFAR, STL-10). */
export type InMemoryDataset = TrainingDataset & { readonly train: ImageSplit };

/** A crop group of a batch (`data.views`): its crops are `Views.crops[start .. start + count)`. */
export interface ViewGroup {
  readonly name: string;
  /** Index of the group's first crop in `Views.crops`. */
  readonly start: number;
  readonly count: number;
  /** [h, w] of the group's crops. */
  readonly size: readonly [number, number];
}

/**
 * A batched multi-crop augmentation. `view(x, i)` draws crop i of every image,
 * crops in group order: `view(x, 0)` the first view, `view(x, 1)` the second
 * (asymmetric pipelines, e.g. BYOL's, draw different transforms per view).
 * Crops are drawn in index order from one random stream, which is part of a
 * checkpoint.
 */
export interface Augmentation {
  /** [h, w] of the first crops (x1, x2). */
  readonly outSize: readonly [number, number];
  /** The crop groups, in order; absent: two crops of `outSize` (one group 'global'). */
  readonly groups?: readonly ViewGroup[];
  /**
   * Crop `index` of a batch: [N, H, W, C] in [0, 1] -> [N, h, w, C] normalised.
   * `part` (data-parallel): x holds rows part.start .. part.start + N of a
   * batch of part.total images; the random draws are those of the whole batch
   * (the same on every worker) and only x's rows are augmented, so N workers
   * see the views one process would make.
   */
  view(x: tf.Tensor4D, index: number, part?: BatchPart): tf.Tensor4D;
  rngState(): number[];
  setRngState(state: readonly number[]): void;
}

/** Where a worker's rows sit in the global batch: rows start .. start + n of `total`. */
export interface BatchPart {
  total: number;
  start: number;
}

export type MetricRecord = { step: number; epoch: number } & Record<string, number>;

export interface Tracker {
  readonly name: string;
  logParams(params: Record<string, unknown>): Promise<void> | void;
  logMetrics(record: MetricRecord): void;
  setSummary(summary: Record<string, unknown>): void;
  /** Labels on the run (MLflow tags), e.g. `contrast.health: collapse`. */
  setTags?(tags: Record<string, string>): void;
  saveArtifact(name: string, data: Uint8Array | string): Promise<void> | void;
  /** Records a file already written (e.g. a checkpoint) as an artifact named `name`. */
  attachFile?(name: string, path: string): void;
  close(status: 'finished' | 'failed' | 'interrupted'): Promise<void>;
}

/**
 * Where training stands, for parts whose behaviour follows a schedule (e.g. a
 * momentum that rises to 1). The trainer sets it before every step.
 */
export class TrainingClock {
  /** Steps completed before the current one. */
  step = 0;
  /** Steps the run will take in all. */
  total = 1;
}
