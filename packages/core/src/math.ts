import * as tf from '@tensorflow/tfjs';
import { ContractError } from './errors.js';

/** Row-wise L2 normalisation: x / max(||x||, eps). */
export function l2Normalize<T extends tf.Tensor>(x: T, eps = 1e-12): T {
  return tf.tidy(() => {
    const norm = tf.maximum(tf.norm(x, 'euclidean', -1, true), eps);
    return tf.div(x, norm) as T;
  });
}

/**
 * MoCo's logits (Algorithm 1): positives l_pos = q.k+ and negatives l_neg = q.queue,
 * concatenated and divided by the temperature. The positive sits in column 0.
 *   query [N, D], positive [N, D], negatives [K, D]  ->  logits [N, 1+K]
 */
export function infoNceLogits(
  query: tf.Tensor2D,
  positive: tf.Tensor2D,
  negatives: tf.Tensor2D,
  temperature: number,
): tf.Tensor2D {
  return tf.tidy(() => {
    const lPos = tf.sum(tf.mul(query, positive), 1, true); // [N, 1]
    const lNeg = tf.matMul(query, negatives, false, true); // [N, K]
    return tf.div(tf.concat([lPos, lNeg], 1), temperature) as tf.Tensor2D;
  });
}

/**
 * Cross-entropy with label `target` per row, averaged over rows:
 * mean(logsumexp(logits) - logits[i, target_i]).
 */
export function crossEntropyAt(logits: tf.Tensor2D, target: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const lse = tf.logSumExp(logits, 1); // [N]
    const picked = tf.sum(tf.mul(logits, tf.oneHot(target, logits.shape[1])), 1); // [N]
    return tf.mean(tf.sub(lse, picked)) as tf.Scalar;
  });
}

/** Fraction of rows whose argmax equals the target. */
export function topOneAccuracy(logits: tf.Tensor2D, target: tf.Tensor1D): tf.Scalar {
  return tf.tidy(
    () => tf.mean(tf.cast(tf.equal(tf.argMax(logits, 1), target), 'float32')) as tf.Scalar,
  );
}

/**
 * InfoNCE (van den Oord et al.; MoCo eq. 1) with the positive in column 0:
 * L = -log exp(q.k+/t) / (exp(q.k+/t) + sum_i exp(q.k_i/t)).
 * With query, positive and all K negatives the same unit vector, L = log(K+1).
 */
export function infoNce(input: {
  query: tf.Tensor2D;
  positive: tf.Tensor2D;
  negatives: tf.Tensor2D;
  temperature: number;
}): { loss: tf.Scalar; logits: tf.Tensor2D } {
  return tf.tidy(() => {
    const logits = infoNceLogits(input.query, input.positive, input.negatives, input.temperature);
    const zeros = tf.zeros([logits.shape[0]], 'int32') as tf.Tensor1D;
    return { loss: crossEntropyAt(logits, zeros), logits };
  });
}

/**
 * InfoNCE with the positive in column 0 as one op with a hand-written gradient,
 * for large K (MoCo's 65536): the same value as `infoNce`, but the only [N, K]
 * tensor kept for the backward pass is the scaled negative logits (tfjs's tape
 * would keep a dozen: the concatenation, the division, every step of
 * log-sum-exp and of the one-hot pick, and their gradients). Backward, with
 * p = softmax(logits) and s = dy / (N t):
 *   dq = s (p_0 - 1) k+ + s p_neg Q;  dk+ = s (p_0 - 1) q;  dQ = s p_neg^T q
 * (dQ only when the negatives can carry a gradient: not for a non-trainable
 * variable such as MoCo's queue or InstDisc's bank). Also returns the pretext
 * accuracy (the positive scores at least as high as every negative, as argmax
 * with ties to the first column).
 */
export function infoNceFused(input: {
  query: tf.Tensor2D;
  positive: tf.Tensor2D;
  negatives: tf.Tensor2D;
  temperature: number;
}): { loss: tf.Scalar; accuracy: tf.Scalar } {
  const { temperature: t } = input;
  const negatives = input.negatives;
  const frozen = negatives instanceof tf.Variable && !negatives.trainable;
  let accuracy: tf.Scalar | undefined;
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [q, k, neg, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    const n = q.shape[0];
    const lPos = tf.div(tf.sum(tf.mul(q, k), 1, true), t) as tf.Tensor2D; // [N, 1]
    const lNeg = tf.tidy(() => tf.div(tf.matMul(q, neg, false, true), t)) as tf.Tensor2D; // [N, K]
    const lse = tf.tidy(() => {
      const m = tf.maximum(tf.max(lNeg, 1, true), lPos); // [N, 1]
      const total = tf.add(tf.exp(tf.sub(lPos, m)), tf.sum(tf.exp(tf.sub(lNeg, m)), 1, true));
      return tf.add(m, tf.log(total)) as tf.Tensor2D;
    });
    accuracy = tf.keep(
      tf.tidy(() => tf.mean(tf.cast(tf.greaterEqual(lPos, tf.max(lNeg, 1, true)), 'float32'))),
    ) as tf.Scalar;
    save([q, k, neg, lPos, lNeg, lse]);
    return {
      value: tf.div(tf.sum(tf.sub(lse, lPos)), n) as tf.Scalar,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, sk, sneg, sPos, sNeg, sLse] = saved as tf.Tensor2D[];
        const scale = tf.div(dy, n * t); // [] : dL/d(raw logit) = (p - onehot) * dy / (N t)
        const dPos = tf.tidy(() => tf.mul(tf.sub(tf.exp(tf.sub(sPos!, sLse!)), 1), scale)); // [N, 1]
        const pNeg = tf.tidy(() => tf.exp(tf.sub(sNeg!, sLse!))); // [N, K], unscaled
        sNeg!.dispose(); // the saved logits are no longer needed
        const dq = tf.tidy(() => tf.add(tf.mul(dPos, sk!), tf.mul(tf.matMul(pNeg, sneg!), scale)));
        const dk = tf.mul(dPos, sq!);
        const dNeg = frozen
          ? tf.zerosLike(sneg!)
          : tf.tidy(() => tf.mul(tf.matMul(pNeg, sq!, true, false), scale));
        tf.dispose([pNeg, dPos, scale]);
        return [dq, dk, dNeg];
      },
    };
  });
  const loss = f(input.query, input.positive, negatives) as tf.Scalar;
  // hand the kept accuracy to the caller's scope, so an enclosing tidy releases it
  const acc = tf.clone(accuracy!);
  accuracy!.dispose();
  return { loss, accuracy: acc };
}

/** Exponential moving average: m * target + (1 - m) * source ("m = 0.999 in MoCo v1"). */
export function ema<T extends tf.Tensor>(target: T, source: T, momentum: number): T {
  return tf.tidy(() => tf.add(tf.mul(target, momentum), tf.mul(source, 1 - momentum)) as T);
}

/** theta_k <- m theta_k + (1 - m) theta_q, variable by variable; shapes must match. */
export function emaUpdateVariables(
  targets: readonly tf.Variable[],
  sources: readonly tf.Tensor[],
  momentum: number,
): void {
  if (targets.length !== sources.length) {
    throw new ContractError(
      `EMA: ${targets.length} target variables but ${sources.length} sources`,
      { hint: 'an EMA copy must be a structural clone of the network it follows' },
    );
  }
  tf.tidy(() => {
    for (let i = 0; i < targets.length; i++) {
      targets[i]!.assign(ema(targets[i]!, sources[i]!, momentum));
    }
  });
}

/**
 * NT-Xent (SimCLR): for 2N embeddings z = [z1; z2], each row's positive is the other
 * view of the same image and its negatives are the other 2N - 2 rows (itself masked).
 * Averaged over both directions. With all embeddings identical the loss is log(2N - 1).
 *   z1, z2 [N, D]  ->  logits [2N, 2N], targets [2N]
 */
export function ntXent(
  z1: tf.Tensor2D,
  z2: tf.Tensor2D,
  temperature: number,
): { loss: tf.Scalar; logits: tf.Tensor2D; targets: tf.Tensor1D } {
  return tf.tidy(() => {
    const n = z1.shape[0];
    const z = tf.concat([z1, z2], 0); // [2N, D]
    const sim = tf.div(tf.matMul(z, z, false, true), temperature); // [2N, 2N]
    // A large finite negative rather than -inf keeps exp() and its gradient at exactly 0 without NaN.
    const logits = tf.sub(sim, tf.mul(tf.eye(2 * n), 1e9)) as tf.Tensor2D;
    const targets = tf.concat([
      tf.range(n, 2 * n, 1, 'int32'),
      tf.range(0, n, 1, 'int32'),
    ]) as tf.Tensor1D;
    return { loss: crossEntropyAt(logits, targets), logits, targets };
  });
}

/**
 * NT-Xent for one worker's rows of a global batch (data-parallel SimCLR, as its
 * official multi-device code): the anchors are this worker's views
 * q = z1[start .. start+n], p = z2[start .. start+n] (with gradient), the
 * candidates are all 2B views of every worker, each anchor's own column masked.
 * The mean over workers of this loss is ntXent over the whole batch.
 *   z1All, z2All [B, D], q, p [n, D]  ->  logits [2n, 2B], targets [2n]
 */
export function ntXentRows(
  z1All: tf.Tensor2D,
  z2All: tf.Tensor2D,
  q: tf.Tensor2D,
  p: tf.Tensor2D,
  start: number,
  temperature: number,
): { loss: tf.Scalar; logits: tf.Tensor2D; targets: tf.Tensor1D } {
  return tf.tidy(() => {
    const b = z1All.shape[0];
    const n = q.shape[0];
    const anchors = tf.concat([q, p], 0); // [2n, D]
    const candidates = tf.concat([z1All, z2All], 0); // [2B, D]
    const sim = tf.div(tf.matMul(anchors, candidates, false, true), temperature); // [2n, 2B]
    const self = tf.concat([
      tf.range(start, start + n, 1, 'int32'),
      tf.range(b + start, b + start + n, 1, 'int32'),
    ]);
    const logits = tf.sub(sim, tf.mul(tf.oneHot(self as tf.Tensor1D, 2 * b), 1e9)) as tf.Tensor2D;
    const targets = tf.concat([
      tf.range(b + start, b + start + n, 1, 'int32'),
      tf.range(start, start + n, 1, 'int32'),
    ]) as tf.Tensor1D;
    return { loss: crossEntropyAt(logits, targets), logits, targets };
  });
}

/**
 * NCE as in InstDisc (Wu et al. 2018), over logits s whose column 0 is the positive:
 *   P = exp(s) / Z,  Pn = 1 / datasetSize,  h(P) = P / (P + K Pn)
 *   L = -mean_i [ log h(P_i0) + sum_k log(1 - h(P_ik)) ]
 * computed in log space, so it stays finite at small temperatures (s = cos / t
 * reaches 1 / t; float32 exp overflows past s = 88, i.e. t < 0.0113). With
 * c = log(K Pn) + log Z:
 *   log h(P)     = -softplus(c - s)        log(1 - h(P)) = -softplus(s - c)
 *   L = mean_i [ softplus(c - s_i0) + sum_k softplus(s_ik - c) ]
 * `logNormaliser` is log Z, a constant (InstDisc estimates Z once, on the first
 * batch: see `nceLogNormaliser`). logits [N, 1+K] -> scalar.
 */
export function nceLoss(
  logits: tf.Tensor2D,
  logNormaliser: number,
  datasetSize: number,
): tf.Scalar {
  return tf.tidy(() => {
    const k = logits.shape[1] - 1;
    // c in float64 first: log Z can be ~1/t + log N, too large to add to log(K Pn) in float32 twice
    const c = Math.log(k / datasetSize) + logNormaliser;
    const sPos = logits.slice([0, 0], [-1, 1]); // [N, 1]
    const sNeg = logits.slice([0, 1], [-1, -1]); // [N, K]
    const pos = tf.sum(tf.softplus(tf.sub(c, sPos)));
    const neg = tf.sum(tf.softplus(tf.sub(sNeg, c)));
    return tf.div(tf.add(pos, neg), logits.shape[0]) as tf.Scalar;
  });
}

/**
 * InstDisc's normaliser Z = mean(exp(s)) * datasetSize, returned as
 * log Z = logmeanexp(s) + log(datasetSize) (finite where Z itself overflows).
 * One host read. logits [N, 1+K] -> number.
 */
export function nceLogNormaliser(logits: tf.Tensor2D, datasetSize: number): number {
  const lse = tf.tidy(() => tf.logSumExp(logits)); // over every entry
  const value = lse.dataSync()[0]!;
  lse.dispose();
  return value - Math.log(logits.size) + Math.log(datasetSize);
}

/**
 * BYOL / MoCo v3's momentum schedule: m rises from m0 to 1 along a half cosine,
 * m(k) = 1 - (1 - m0) * (cos(pi k / K) + 1) / 2.
 */
export function cosineMomentum(m0: number, step: number, total: number): number {
  if (total <= 0) return m0;
  return 1 - ((1 - m0) * (Math.cos((Math.PI * Math.min(step, total)) / total) + 1)) / 2;
}

/**
 * Row-wise cosine similarity of p and z, averaged over the batch, negated:
 * SimSiam's D(p, z) = -mean_i cos(p_i, z_i) (Chen & He 2021, Algorithm 1).
 * Identical directions give -1, orthogonal ones 0, opposite ones +1.
 *   p [N, D], z [N, D]  ->  scalar
 */
export function negativeCosine(p: tf.Tensor2D, z: tf.Tensor2D): tf.Scalar {
  return tf.tidy(
    () => tf.neg(tf.mean(tf.sum(tf.mul(l2Normalize(p), l2Normalize(z)), 1))) as tf.Scalar,
  );
}

/**
 * BYOL's regression loss (Grill et al. 2020, eq. 2): the squared distance of the
 * L2-normalised prediction and target, ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z),
 * averaged over the batch. Identical directions give 0, orthogonal ones 2, opposite 4.
 *   p [N, D], z [N, D]  ->  scalar
 */
export function normalizedMse(p: tf.Tensor2D, z: tf.Tensor2D): tf.Scalar {
  return tf.tidy(
    () => tf.mean(tf.sum(tf.square(tf.sub(l2Normalize(p), l2Normalize(z))), 1)) as tf.Scalar,
  );
}
