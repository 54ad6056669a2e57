import * as tf from '@tensorflow/tfjs';

/**
 * Image -> encoder input, shared by Node (embed, gallery) and the browser page
 * (this module imports nothing but tfjs, so the page bundles it).
 */

/** The input description a model needs (the sidecar's `input`). */
export interface InputSpec {
  height: number;
  width: number;
  channels: number;
  mean: readonly number[];
  std: readonly number[];
}

/**
 * RGB pixels [H, W, 3] (0..255, any size) -> [height, width, 3] whole numbers
 * 0..255, as training decodes image folders (@contrast/data readImageFiles):
 * bilinear resize with half-pixel centres, rounded and clipped.
 */
export function resizeAsTraining(rgb: tf.Tensor3D, height: number, width: number): tf.Tensor3D {
  return tf.tidy(() => {
    const resized = tf.image.resizeBilinear(tf.cast(rgb, 'float32'), [height, width], false, true);
    return tf.clipByValue(tf.round(resized), 0, 255);
  });
}

/**
 * Whole-number RGB [N, H, W, 3] (0..255) -> the model's input [N, H, W, C]:
 * grey for a 1-channel encoder (tf.image.rgbToGrayscale's 0.2989 / 0.587 / 0.114,
 * rounded), then pixels / 255, then (x - mean) / std per channel.
 */
export function toModelInput(rgb: tf.Tensor4D, input: InputSpec): tf.Tensor4D {
  return tf.tidy(() => {
    let x = tf.cast(rgb, 'float32') as tf.Tensor4D;
    if (input.channels === 1) x = tf.round(tf.image.rgbToGrayscale(x)) as tf.Tensor4D;
    const scaled = tf.div(x, 255);
    return tf.div(tf.sub(scaled, tf.tensor1d([...input.mean])), tf.tensor1d([...input.std]));
  }) as tf.Tensor4D;
}

/** Rows of a row-major [n, dim] matrix scaled to unit L2 norm, in place (zero rows stay zero). */
export function l2NormalizeRows(data: Float32Array, dim: number): Float32Array {
  for (let r = 0; r < data.length; r += dim) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += data[r + j]! * data[r + j]!;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < dim; j++) data[r + j]! *= inv;
  }
  return data;
}

/** A neighbour: its row in the gallery and its cosine similarity. */
export interface Neighbour {
  index: number;
  similarity: number;
}

/**
 * The k gallery rows most similar to `query` (all unit vectors, so the dot
 * product is the cosine similarity), highest first, ties by lower index.
 */
export function nearest(
  query: Float32Array,
  gallery: Float32Array,
  dim: number,
  k: number,
): Neighbour[] {
  const n = gallery.length / dim;
  const all: Neighbour[] = [];
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += query[j]! * gallery[i * dim + j]!;
    all.push({ index: i, similarity: s });
  }
  all.sort((a, b) => b.similarity - a.similarity || a.index - b.index);
  return all.slice(0, k);
}
