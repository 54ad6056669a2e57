import * as tf from '@tensorflow/tfjs';
import type { Collectives } from './collectives.js';
import type {
  ContrastiveLoss,
  Encoder,
  Head,
  KeyEncoderPolicy,
  NegativeSource,
  Stateful,
} from './contracts.js';
import { PluginError } from './errors.js';
import { l2Normalize } from './math.js';
import { contrastiveLoss, type BuildContext } from './plugin.js';
import {
  MethodParts,
  symmetrize,
  type Method,
  type MethodPhases,
  type Objective,
  type ParameterGroup,
  type StepContext,
  type Views,
} from './method.js';

/** The shared parts a contrastive method is composed of (MoCo's Figure 2: the three mechanisms). */
export interface ContrastiveParts {
  /** The plugin's name. */
  name: string;
  /** The query encoder (backbone + projection): what is trained and evaluated. */
  encoder: Encoder;
  /** Where the keys come from: momentum (MoCo), shared with gradient (SimCLR), stop-gradient, none (bank). */
  keyEncoder: KeyEncoderPolicy;
  /** Where the positive and the negatives come from: a queue, a bank, the batch. */
  source: NegativeSource;
  loss: ContrastiveLoss;
  /** tau. */
  temperature: number;
  /** l(q1, k2) + l(q2, k1) instead of l(q1, k2) (MoCo's CIFAR demo, MoCo v3). */
  symmetric: boolean;
  /** A predictor on the query side only (MoCo v3): q = normalise(predictor(project(x))). */
  predictor?: Head;
  /**
   * What crosses workers (absent: one process). In-batch negatives are every
   * worker's embeddings, gathered with gradient; the source's afterStep sees
   * every worker's keys / queries (MoCo's concat_all_gather), in the order one
   * process would have them.
   */
  collectives?: Collectives;
}

interface PreparedKeys {
  /** [N, D] keys of view 1 (symmetric loss only) and of view 2, when encoded before the tape. */
  k1?: tf.Tensor2D | undefined;
  k2?: tf.Tensor2D | undefined;
}

/** A loss with state (NCE's normaliser) as a part saved under `loss/`. */
function statefulLoss(loss: ContrastiveLoss): Stateful {
  return {
    state: () => loss.state!(),
    loadState: (s) => loss.loadState!(s),
    dispose: () => undefined,
  };
}

/**
 * A contrastive method as a composition: queries from the encoder (and an
 * optional predictor), keys from a key-encoder policy, positives and negatives
 * from a negative source, a contrastive loss, optionally symmetrised.
 *   prepare:   keys without gradient (momentum / stop-gradient), view 2 (and view 1 if symmetric)
 *   objective: q = query(x1) [, q2 = query(x2)]; keys with gradient when the policy says so;
 *              loss(q, k+, negatives) [+ loss(q2, k1+, negatives)]; pretext accuracy
 *   afterStep: source.afterStep (enqueue the batch's keys / write the bank rows), then EMA
 * Keys reach afterStep whether they were encoded before or inside the tape.
 */
export class ContrastiveMethod extends MethodParts implements Method<PreparedKeys> {
  readonly name: string;
  readonly phases: MethodPhases;

  /** The parts it is composed of (benchmarks and tests reach the queue and key encoder here). */
  constructor(readonly parts: ContrastiveParts) {
    const { keyEncoder, source, loss, predictor } = parts;
    super({
      key_encoder: keyEncoder,
      strategy: source,
      ...(loss.state ? { loss: statefulLoss(loss) } : {}),
      ...(predictor ? { predictor } : {}),
    });
    this.name = parts.name;
    this.phases = {
      prepare: ['key_encoder'],
      objective: ['query_forward', 'logits_loss'],
      afterStep: [parts.source.updatePhase, parts.keyEncoder.updatePhase].filter(
        (p): p is string => p !== undefined,
      ),
    };
  }

  parameterGroups(): ParameterGroup[] {
    const { encoder, predictor } = this.parts;
    return [{ params: [...encoder.parameters(), ...(predictor?.parameters() ?? [])] }];
  }

  /** The loss's chance value for this source's negatives (doubled when two-way). */
  chanceLoss(batchSize: number): number | undefined {
    const { loss, source, temperature, symmetric } = this.parts;
    const one = loss.chance?.({ negatives: source.negativesPerQuery, batchSize, temperature });
    return one === undefined ? undefined : symmetric ? 2 * one : one;
  }

  stepValues(): Record<string, number> {
    const m = this.parts.keyEncoder.currentMomentum;
    return m === undefined ? {} : { momentum: m };
  }

  prepare(views: Views, ctx: StepContext): PreparedKeys {
    const { keyEncoder, symmetric } = this.parts;
    const keys: PreparedKeys = {};
    if (!keyEncoder.withGradient) {
      if (symmetric) keys.k1 = keyEncoder.encode(views.x1); // view 1's key, for q2
      keys.k2 = keyEncoder.encode(views.x2);
    }
    ctx.mark('key_encoder');
    return keys;
  }

  objective(views: Views, prepared: PreparedKeys, ctx: StepContext): Objective {
    const { keyEncoder, symmetric } = this.parts;
    const key = (x: tf.Tensor4D, before: tf.Tensor2D | undefined) =>
      keyEncoder.withGradient ? keyEncoder.encode(x) : before;
    if (!symmetric) {
      const q = this.query(views.x1);
      const k = key(views.x2, prepared.k2);
      ctx.mark('query_forward');
      const out = this.term(views, q, k, k);
      ctx.mark('logits_loss');
      return out;
    }
    const q1 = this.query(views.x1);
    const q2 = this.query(views.x2);
    const k1 = key(views.x1, prepared.k1);
    const k2 = key(views.x2, prepared.k2);
    ctx.mark('query_forward');
    // each term carries its own view's query and key, so afterStep sees [q1; q2] and [k1; k2]
    const out = symmetrize((d) =>
      d === 0 ? this.term(views, q1, k2, k1) : this.term(views, q2, k1, k2),
    );
    ctx.mark('logits_loss');
    return out;
  }

  afterStep(
    { views, carry }: { views: Views; carry: Record<string, tf.Tensor> },
    ctx: StepContext,
  ): void {
    const { source, keyEncoder } = this.parts;
    tf.tidy(() => source.afterStep(this.sourceUpdate(views, carry)));
    if (source.updatePhase) ctx.mark(source.updatePhase);
    keyEncoder.afterStep();
    if (keyEncoder.updatePhase) ctx.mark(keyEncoder.updatePhase);
  }

  /**
   * What the source's afterStep sees: the batch's queries, keys and indices
   * ([q1; q2] etc. with a symmetric loss). Data-parallel, each is gathered
   * from every worker per view, so the rows come in one process's order
   * ([q1 of all workers; q2 of all workers]); only what the source reads.
   */
  private sourceUpdate(views: Views, carry: Record<string, tf.Tensor>) {
    const query = carry.query as tf.Tensor2D;
    const key = carry.key as tf.Tensor2D | undefined;
    const twice = query.shape[0] !== views.indices.shape[0];
    const both = <T extends tf.Tensor>(t: T): T => (twice ? (tf.concat([t, t], 0) as T) : t);
    const bothArray = (a: Int32Array) => (twice ? Int32Array.from([...a, ...a]) : a);
    const c = this.parts.collectives;
    if (!c || c.worldSize === 1) {
      return { query, key, indices: both(views.indices), indexArray: bothArray(views.indexArray) };
    }
    const reads = this.parts.source.afterStepReads ?? ['query', 'key', 'indices'];
    const gather = <T extends tf.Tensor>(t: T): T =>
      twice ? gatherHalves(c, t) : c.allGather(t, { sameShape: true });
    return {
      query: reads.includes('query') ? gather(query) : query,
      key: key && reads.includes('key') ? gather(key) : key,
      indices: reads.includes('indices') ? gather(both(views.indices)) : views.indices,
      indexArray: bothArray(views.part?.batchIndexArray ?? views.indexArray),
    };
  }

  /** [N, D] L2-normalised queries: the encoder's embedding, or the predictor's output. */
  private query(x: tf.Tensor4D): tf.Tensor2D {
    const { encoder, predictor } = this.parts;
    if (!predictor) return encoder.embed(x, true);
    return tf.tidy(() => l2Normalize(predictor.apply(encoder.project(x, true), true)));
  }

  /** One direction: q against its positive key and the source's negatives. */
  private term(
    views: Views,
    query: tf.Tensor2D,
    positiveKey: tf.Tensor2D | undefined,
    ownKey: tf.Tensor2D | undefined,
  ): Objective {
    const { source, loss, temperature, collectives: c } = this.parts;
    const keys = source.keys({
      query,
      key: positiveKey,
      indices: views.indices,
      indexArray: views.indexArray,
      ...(views.part ? { batchIndexArray: views.part.batchIndexArray } : {}),
    });
    // data-parallel in-batch negatives: every worker's embeddings, the gradient flowing back to their worker
    const batch =
      keys.negatives === 'in-batch' && c && c.worldSize > 1
        ? {
            query: c.allGatherWithGradient(query, { sameShape: true }),
            positive: c.allGatherWithGradient(keys.positive, { sameShape: true }),
            start: views.part?.start ?? c.rank * query.shape[0],
          }
        : undefined;
    const { loss: value, accuracy } = loss.compute({
      query,
      ...keys,
      temperature,
      ...(batch ? { batch } : {}),
    });
    return {
      loss: value,
      metrics: { pretext_accuracy: accuracy },
      carry: { query, ...(ownKey ? { key: ownKey } : {}) },
    };
  }
}

/**
 * Every worker's [h1; h2] (two halves of n rows each, e.g. [q1; q2] of a
 * symmetric loss) as one process orders them, [h1 of every worker; h2 of
 * every worker], with one all-gather: the gathered [N, 2, n, ...] is
 * transposed to [2, N, n, ...]. Every worker's slice has the same shape.
 */
function gatherHalves<T extends tf.Tensor>(c: Collectives, t: T): T {
  return tf.tidy(() => {
    const [rows, ...rest] = t.shape;
    const all = c.allGather(t, { sameShape: true }); // [N * 2n, ...], rank order
    // swap the worker and half axes of [N, 2, n, ...]
    const perm = [1, 0, ...Array.from({ length: rest.length + 1 }, (_, i) => i + 2)];
    return tf
      .transpose(all.reshape([c.worldSize, 2, rows! / 2, ...rest]), perm)
      .reshape([c.worldSize * rows!, ...rest]) as T;
  });
}

/**
 * Builds a ContrastiveMethod from a plugin's BuildContext and the parts it
 * chose; the encoder, the selected loss, tau, the two-way setting (the
 * resolved config) and the collectives come from the context.
 * @throws PluginError when the selected loss is not contrastive or there is no temperature.
 */
export function composeContrastive(
  context: BuildContext,
  parts: Pick<ContrastiveParts, 'keyEncoder' | 'source' | 'predictor'>,
): ContrastiveMethod {
  const loss = contrastiveLoss(context);
  const { temperature, symmetric } = context.config.loss;
  if (temperature === undefined) {
    throw new PluginError(context.plugin, 'a contrastive method needs a temperature', {
      hint: 'give the plugin a default (loss: { temperature: 0.1, ... }) or set loss.temperature',
    });
  }
  const { collectives } = context;
  return new ContrastiveMethod({
    ...parts,
    name: context.plugin,
    ...(collectives.worldSize > 1 ? { collectives } : {}),
    encoder: context.encoder,
    loss,
    temperature,
    symmetric: symmetric ?? false,
  });
}
