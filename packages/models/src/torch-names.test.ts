import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ConfigError, ExperimentSchema, Rng } from '@contrast/core';
import { createEncoder } from './resnet.js';
import {
  fromTorchLayout,
  toTorchLayout,
  torchName,
  torchStateDict,
  type HostTensor,
} from './torch-names.js';

const host = (named: ReadonlyMap<string, tf.Variable>) =>
  new Map<string, HostTensor>(
    [...named].map(([k, v]) => [k, { data: v.dataSync() as Float32Array, shape: [...v.shape] }]),
  );

const encoder = (model: Record<string, unknown>, channels = 3) =>
  createEncoder(
    {
      model: ExperimentSchema.shape.model.parse(model),
      input: { height: 32, width: 32, channels },
    },
    new Rng(0),
  );

describe('Contrast -> PyTorch names and layouts', () => {
  it('maps ResNet names onto torchvision state_dict keys', () => {
    expect(torchName('resnet18', 'stem/conv/w')).toBe('conv1.weight');
    expect(torchName('resnet18', 'stem/bn/gamma')).toBe('bn1.weight');
    expect(torchName('resnet18', 'stem/bn/beta')).toBe('bn1.bias');
    expect(torchName('resnet18', 'layer1/1/bn2/running_var')).toBe('layer1.1.bn2.running_var');
    expect(torchName('resnet50', 'layer3/0/conv3/w')).toBe('layer3.0.conv3.weight');
    expect(torchName('resnet18', 'layer2/0/shortcut/conv/w')).toBe('layer2.0.downsample.0.weight');
    expect(torchName('resnet18', 'layer2/0/shortcut/bn/running_mean')).toBe(
      'layer2.0.downsample.1.running_mean',
    );
    expect(torchName('resnet18', 'head/fc/w')).toBe('fc.weight');
    expect(torchName('resnet18', 'head/fc2/b')).toBe('fc.2.bias');
  });

  it("maps the ConvNet onto its documented nn.Sequential('features', 'fc')", () => {
    expect(torchName('convnet', 'conv1/w')).toBe('features.0.weight');
    expect(torchName('convnet', 'bn1/gamma')).toBe('features.1.weight');
    expect(torchName('convnet', 'conv2/w')).toBe('features.4.weight');
    expect(torchName('convnet', 'bn3/running_var')).toBe('features.9.running_var');
    expect(torchName('convnet', 'head/fc1/w')).toBe('fc.0.weight');
  });

  it('refuses names outside the layouts with a coded error', () => {
    expect(() => torchName('resnet18', 'predictor/fc1/w')).toThrow(ConfigError);
    expect(() => torchName('convnet', 'conv4/w')).toThrow(/no PyTorch name/);
    expect(() => torchName('resnet18', 'stem/conv/kernel')).toThrow(ConfigError);
  });

  it('transposes HWIO -> OIHW and [in, out] -> [out, in], element by element', () => {
    // conv w[kh][kw][i][o] = 1000 kh + 100 kw + 10 i + o, shape [2, 2, 2, 3]
    const shape = [2, 2, 2, 3];
    const data = new Float32Array(24);
    for (let kh = 0; kh < 2; kh++)
      for (let kw = 0; kw < 2; kw++)
        for (let i = 0; i < 2; i++)
          for (let o = 0; o < 3; o++)
            data[((kh * 2 + kw) * 2 + i) * 3 + o] = 1000 * kh + 100 * kw + 10 * i + o;
    const t = toTorchLayout({ data, shape });
    expect(t.shape).toEqual([3, 2, 2, 2]);
    // torch[o][i][kh][kw] at o=2, i=1, kh=1, kw=0
    expect(t.data[((2 * 2 + 1) * 2 + 1) * 2 + 0]).toBe(1000 + 10 + 2);
    expect(t.data[0]).toBe(0);
    expect(Array.from(fromTorchLayout(t).data)).toEqual(Array.from(data));
    const dense = toTorchLayout({ data: Float32Array.of(1, 2, 3, 4, 5, 6), shape: [2, 3] });
    expect(dense.shape).toEqual([3, 2]);
    expect(Array.from(dense.data)).toEqual([1, 4, 2, 5, 3, 6]);
    const vec = toTorchLayout({ data: Float32Array.of(7, 8), shape: [2] });
    expect(Array.from(vec.data)).toEqual([7, 8]);
  });

  it('gives torchvision resnet18 / resnet50 key counts: 120 / 318 without fc, +2 with a linear fc', () => {
    // torchvision: resnet18 has 62 parameters and 20 BN layers x 3 buffers = 122 keys with fc;
    // resnet50 has 161 parameters and 53 BN layers x 3 buffers = 320 keys with fc
    for (const [net, withoutFc] of [
      ['resnet18', 120],
      ['resnet50', 318],
    ] as const) {
      const enc = encoder({ encoder: net, width: 0.0625, stem: 'imagenet', dim: 8 });
      const all = host(enc.namedVariables());
      const sd = torchStateDict(net, all, 7);
      expect(sd.size).toBe(withoutFc + 2);
      const backbone = new Map([...all].filter(([k]) => !k.startsWith('head/')));
      expect(torchStateDict(net, backbone).size).toBe(withoutFc);
      const nbt = sd.get('layer1.0.bn1.num_batches_tracked')!;
      expect(nbt.dtype).toBe('I64');
      expect(nbt.shape).toEqual([]);
      expect(nbt.data[0]).toBe(7n);
      expect(sd.get('fc.weight')!.shape).toEqual([8, enc.featureDim]);
      expect(sd.get('conv1.weight')!.shape).toEqual([4, 3, 7, 7]);
      enc.dispose();
    }
  });
});
