import type * as tf from '@tensorflow/tfjs';
import type { Collectives } from './collectives.js';
import type { Encoder } from './contracts.js';
import { MethodParts, type Method, type StepContext, type Views } from './method.js';
import { gatherBatch, type PairedLoss } from './paired-losses.js';

/**
 * A method of one encoder f (backbone + projector) for both views and a
 * 'paired' loss of the two embeddings: no predictor, no negatives, no
 * stop-gradient (Barlow Twins, VICReg):
 *   z1, z2 = f(x1), f(x2);  L = loss(z1, z2)      z: [B, D]
 * Data-parallel: every worker's embeddings are gathered with gradient
 * (`gatherBatch`), so the loss's batch statistics are the global batch's and
 * each worker computes the loss of the whole batch (the official codes'
 * SyncBatchNorm + all_reduce, or FullGatherLayer). The loss's metrics are logged.
 */
export class PairedMethod extends MethodParts implements Method<undefined> {
  readonly phases = { prepare: [], objective: ['forward', 'loss'], afterStep: [] };

  constructor(
    readonly name: string,
    private readonly encoder: Encoder,
    private readonly loss: PairedLoss,
    private readonly collectives: Collectives,
  ) {
    super({});
  }

  parameterGroups() {
    return [{ params: this.encoder.parameters() }];
  }

  prepare(): undefined {
    return undefined;
  }

  objective(views: Views, _prepared: undefined, ctx: StepContext) {
    const embed = (x: tf.Tensor4D) => gatherBatch(this.collectives, this.encoder.project(x, true));
    const z1 = embed(views.x1); // [B, D], B the global batch
    const z2 = embed(views.x2);
    ctx.mark('forward');
    const out = this.loss.compute({ z1, z2 });
    ctx.mark('loss');
    return out;
  }

  afterStep(): void {}
}
