/**
 * Resampling a ViT's position embedding to another patch grid, as DINO's
 * `VisionTransformer.interpolate_pos_encoding` (vision_transformer.py): the patch
 * positions, viewed as a [gh, gw] image of embedDim channels, are resized by
 * `F.interpolate(mode='bicubic', align_corners=False, scale_factor=(h0 + 0.1) / gh, ...)`
 * to the new [h0, w0] grid; the class token's position is kept as it is. The 0.1
 * is DINO's guard against float error in the output size (dino#8); the scale it
 * gives is also what PyTorch uses to place the samples, so it is kept here.
 *
 * A resize with fixed sizes is a linear map of the positions, so it is built once
 * as a matrix [h0 * w0, gh * gw] and applied with a matMul: gradients reach the
 * learned embedding through it as through PyTorch's upsample_bicubic2d backward.
 */

/** PyTorch's cubic convolution coefficient (UpSample.h, Keys' kernel with A = -0.75). */
const A = -0.75;

/** Keys' kernel for |x| <= 1 (PyTorch's cubic_convolution1). */
function cubicNear(x: number): number {
  return ((A + 2) * x - (A + 3)) * x * x + 1;
}

/** Keys' kernel for 1 < |x| < 2 (PyTorch's cubic_convolution2). */
function cubicFar(x: number): number {
  return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

/**
 * The 1-D bicubic resize matrix [outSize, inSize] of PyTorch's upsample_bicubic2d
 * (align_corners false): output i samples the input at (i + 0.5) / scaleFactor - 0.5
 * with the four weights of Keys' kernel, indices clamped to the border.
 * @param inSize input length (patches along one side).
 * @param scaleFactor the `scale_factor` given to F.interpolate (outSize = floor(inSize * scaleFactor)).
 */
export function bicubicResizeMatrix(inSize: number, scaleFactor: number): Float64Array[] {
  const outSize = Math.floor(inSize * scaleFactor);
  const rows: Float64Array[] = [];
  for (let i = 0; i < outSize; i++) {
    const src = (i + 0.5) / scaleFactor - 0.5;
    const x0 = Math.floor(src);
    const t = src - x0;
    const w = [cubicFar(t + 1), cubicNear(t), cubicNear(1 - t), cubicFar(2 - t)];
    const row = new Float64Array(inSize);
    w.forEach((wk, k) => {
      row[Math.min(Math.max(x0 - 1 + k, 0), inSize - 1)]! += wk;
    });
    rows.push(row);
  }
  return rows;
}

/**
 * The matrix [h0 * w0, gh * gw] (row-major patches on both sides) that resamples a
 * [gh, gw] grid of patch positions to [h0, w0] as DINO's interpolate_pos_encoding
 * does: the outer product of the two 1-D bicubic resizes, with scale factors
 * (h0 + 0.1) / gh and (w0 + 0.1) / gw. (DINO's code names the height grid w0, as
 * it unpacks `B, nc, w, h = x.shape`; its first factor applies to the height too.)
 */
export function positionResampleMatrix(
  gh: number,
  gw: number,
  h0: number,
  w0: number,
): Float32Array {
  const rh = bicubicResizeMatrix(gh, (h0 + 0.1) / gh);
  const rw = bicubicResizeMatrix(gw, (w0 + 0.1) / gw);
  // floor(g * (h0 + 0.1) / g) = h0 for any g: the guard only states the invariant
  if (rh.length !== h0 || rw.length !== w0) {
    throw new Error(
      `resampling ${gh}x${gw} positions gave ${rh.length}x${rw.length}, not ${h0}x${w0}`,
    );
  }
  const out = new Float32Array(h0 * w0 * gh * gw);
  const n = gh * gw;
  for (let i = 0; i < h0; i++) {
    for (let j = 0; j < w0; j++) {
      const row = (i * w0 + j) * n;
      for (let a = 0; a < gh; a++) {
        const wa = rh[i]![a]!;
        if (wa === 0) continue;
        for (let b = 0; b < gw; b++) out[row + a * gw + b] = wa * rw[j]![b]!;
      }
    }
  }
  return out;
}
