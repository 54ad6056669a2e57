import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ExperimentSchema, l2Normalize, Rng } from '@contrast/core';
import { ContrastEncoder } from '@contrast/models';
import { buildLayersModel, saveLayersModel } from './layers-model.js';
import {
  maxAbsDiff,
  parityImages,
  parityLabel,
  randomizeBatchNorm,
  TFJS_PARITY_ENCODERS,
} from './parity.js';

describe('tfjs export (tf.layers model, loaded back with tf.loadLayersModel)', () => {
  for (const entry of TFJS_PARITY_ENCODERS) {
    const { channels, ...model } = entry;
    const label = parityLabel(entry);
    it(`${label}: features of 256 test images equal Contrast's eval-mode features (< 1e-5), and the projection head`, async () => {
      const x = parityImages(channels);
      const [, h, w] = x.shape;
      const spec = {
        model: ExperimentSchema.shape.model.parse({ ...model, dim: 16 }),
        input: { height: h, width: w, channels },
      };
      const enc = new ContrastEncoder(spec, { rng: new Rng(3) });
      randomizeBatchNorm(enc, 11);
      const built = buildLayersModel(enc.describe(), enc.namedVariables(), spec.input);
      const dir = mkdtempSync(join(tmpdir(), 'contrast-tfjs-'));
      await saveLayersModel(built, dir);
      built.dispose();
      const before = tf.memory().numTensors;
      const loaded = await tf.loadLayersModel(pathToFileURL(join(dir, 'model.json')).href);
      const [f, z] = loaded.predict(x) as tf.Tensor[];
      const ref = enc.features(x, false);
      const refZ = enc.embed(x, false);
      const diff = maxAbsDiff(f!, ref);
      const diffZ = tf.tidy(() => maxAbsDiff(l2Normalize(z as tf.Tensor2D), refZ));
      console.log(
        `${label}: features max |diff| ${diff.toExponential(2)}, projection ${diffZ.toExponential(2)}`,
      );
      expect(f!.shape).toEqual([256, enc.featureDim]);
      expect(diff).toBeLessThan(1e-5);
      expect(diffZ).toBeLessThan(1e-5);
      expect(tf.tidy(() => tf.max(tf.abs(ref)).dataSync()[0])).toBeGreaterThan(0.1); // not a trivially small output
      tf.dispose([f!, z!, ref, refZ, x]);
      loaded.dispose();
      expect(tf.memory().numTensors).toBeLessThanOrEqual(before - 1); // x was made before `before`
      enc.dispose();
    });
  }
});
