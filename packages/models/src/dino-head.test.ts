import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { Rng } from '@contrast/core';
import { DinoHead } from './dino-head.js';
import { contrastName, fromTorchTensor, toTorchTensor, torchName } from './torch-names.js';

const SIZES = { inDim: 6, hiddenDim: 10, bottleneckDim: 4, outDim: 12, layers: 3 };

describe('DinoHead', () => {
  it('its last layer has unit-norm columns (weight_norm with g = 1) at any V', () => {
    const head = new DinoHead(SIZES, { rng: new Rng(0) });
    head.lastV.assign(tf.mul(head.lastV, tf.linspace(0.5, 7, 12))); // columns of other norms
    const w = head.lastWeight();
    expect(w.shape).toEqual([4, 12]);
    const norms = tf.norm(w, 'euclidean', 0).dataSync();
    for (const n of norms) expect(n).toBeCloseTo(1, 5);
    w.dispose();
    head.dispose();
  });

  it("y = W^T normalize(MLP(x)): outputs are cosines, the MLP's GELU layers feed a bottleneck", () => {
    const head = new DinoHead(SIZES, { rng: new Rng(1) });
    const x = tf.randomNormal([5, 6], 0, 1, 'float32', 3) as tf.Tensor2D;
    const y = head.apply(x, true);
    expect(y.shape).toEqual([5, 12]);
    expect(Math.max(...y.abs().dataSync())).toBeLessThanOrEqual(1 + 1e-6);
    // the same computed by hand from the named variables
    const v = head.namedVariables();
    const gelu = (t: tf.Tensor) => tf.mul(tf.mul(t, 0.5), tf.add(tf.erf(tf.div(t, Math.SQRT2)), 1));
    const dense = (t: tf.Tensor, i: number) =>
      tf.add(
        tf.matMul(t as tf.Tensor2D, v.get(`dino_head/fc${i}/w`)! as tf.Tensor2D),
        v.get(`dino_head/fc${i}/b`)!,
      );
    const h = dense(gelu(dense(gelu(dense(x, 1)), 2)), 3);
    const hn = tf.div(h, tf.norm(h, 'euclidean', 1, true));
    const last = v.get('dino_head/last/v')!;
    const want = tf.matMul(
      hn as tf.Tensor2D,
      tf.div(last, tf.norm(last, 'euclidean', 0, true)) as tf.Tensor2D,
    );
    expect(Math.max(...tf.sub(y, want).abs().dataSync())).toBeLessThan(1e-5);
    expect([...v.keys()]).toEqual([
      'dino_head/fc1/w',
      'dino_head/fc1/b',
      'dino_head/fc2/w',
      'dino_head/fc2/b',
      'dino_head/fc3/w',
      'dino_head/fc3/b',
      'dino_head/last/v',
    ]);
    expect(head.mlpParameters()).toHaveLength(6);
    head.dispose();
  });

  it('a clone holds the same values in variables of its own, not trainable for a teacher', () => {
    const head = new DinoHead({ ...SIZES, layers: 1 }, { rng: new Rng(2) });
    const teacher = head.clone({ trainable: false });
    expect(teacher.parameters().every((p) => !p.trainable)).toBe(true);
    expect(teacher.lastV).not.toBe(head.lastV);
    expect(Array.from(teacher.lastV.dataSync())).toEqual(Array.from(head.lastV.dataSync()));
    teacher.dispose();
    head.dispose();
  });
});

describe("DinoHead's torch names (main_dino.py's DINOHead)", () => {
  it('maps the MLP to mlp.<2i> and V to last_layer.weight_v [K, bottleneck], and back', () => {
    expect(torchName('dino_head/fc1/w')).toBe('dino_head.mlp.0.weight');
    expect(torchName('dino_head/fc3/b')).toBe('dino_head.mlp.4.bias');
    expect(torchName('dino_head/last/v')).toBe('dino_head.last_layer.weight_v');
    for (const n of ['dino_head/fc2/w', 'dino_head/fc2/b', 'dino_head/last/v']) {
      expect(contrastName(torchName(n), { resnet: false })).toBe(n);
    }
    // V [2, 3] (bottleneck x K) -> weight_v [3, 2]: row k is output unit k's direction
    const t = toTorchTensor('dino_head/last/v', [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]));
    expect(t.shape).toEqual([3, 2]);
    expect(Array.from(t.data as Float32Array)).toEqual([1, 4, 2, 5, 3, 6]);
    const back = fromTorchTensor({ ...t, data: t.data as Float32Array }, { resnet: false });
    expect(back).toEqual({
      name: 'dino_head/last/v',
      shape: [2, 3],
      data: Float32Array.from([1, 2, 3, 4, 5, 6]),
    });
  });
});
