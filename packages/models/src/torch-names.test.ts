import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ExperimentSchema, Rng, StateError } from '@contrast/core';
import { createEncoder } from './encoder.js';
import { createPredictor } from './heads.js';
import {
  contrastName,
  fromTorchTensor,
  hasTorchEntry,
  nhwcToNchw,
  torchName,
  torchStateDict,
  toTorchTensor,
} from './torch-names.js';

const spec = (model: Record<string, unknown>, channels = 3) => ({
  model: ExperimentSchema.shape.model.parse(model),
  input: { height: 16, width: 16, channels },
});

const onHost = (vars: ReadonlyMap<string, tf.Variable>) =>
  [...vars].map(([k, v]) => [k, { shape: v.shape, data: v.dataSync() as Float32Array }] as const);

/** torchvision's resnet18().state_dict() keys, in order (fc -> 128 changes no name). */
function torchvisionResnet18Keys(): string[] {
  const bn = (m: string) =>
    ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'].map(
      (f) => `${m}.${f}`,
    );
  const keys = ['conv1.weight', ...bn('bn1')];
  for (let layer = 1; layer <= 4; layer++) {
    for (let block = 0; block < 2; block++) {
      const b = `layer${layer}.${block}`;
      keys.push(`${b}.conv1.weight`, ...bn(`${b}.bn1`), `${b}.conv2.weight`, ...bn(`${b}.bn2`));
      if (layer > 1 && block === 0)
        keys.push(`${b}.downsample.0.weight`, ...bn(`${b}.downsample.1`));
    }
  }
  return [...keys, 'fc.weight', 'fc.bias'];
}

describe('Contrast -> torchvision names and layouts', () => {
  it("a ResNet-18's state_dict has exactly torchvision's keys, in its order", () => {
    const enc = createEncoder(spec({ encoder: 'resnet18', width: 0.125, dim: 8 }), new Rng(0));
    const dict = torchStateDict(onHost(enc.namedVariables()));
    expect(dict.map((t) => t.name)).toEqual(torchvisionResnet18Keys());
    expect(dict.length).toBe(122);
    const fc = dict.find((t) => t.name === 'fc.weight')!;
    expect(fc.shape).toEqual([8, 64]); // nn.Linear: [out, in]
    expect(dict.find((t) => t.name === 'conv1.weight')!.shape).toEqual([8, 3, 3, 3]); // OIHW
    const counter = dict.find((t) => t.name === 'bn1.num_batches_tracked')!;
    expect(counter.dtype).toBe('int64');
    expect(Array.from(counter.data as BigInt64Array)).toEqual([0n]);
    enc.dispose();
  });

  it('conv filters go HWIO -> OIHW and linear weights [in, out] -> [out, in], element by element', () => {
    // HWIO [2, 2, 1, 3] holding 0..11: w[h][w][0][o] = (2h + w) * 3 + o
    const conv = toTorchTensor(
      'layer1/0/conv1/w',
      [2, 2, 1, 3],
      Float32Array.from({ length: 12 }, (_, i) => i),
    );
    expect(conv.shape).toEqual([3, 1, 2, 2]);
    // OIHW: o = 0 reads 0, 3, 6, 9; o = 2 reads 2, 5, 8, 11
    expect(Array.from(conv.data as Float32Array)).toEqual([0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]);
    const fc = toTorchTensor('head/fc/w', [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]));
    expect(fc.shape).toEqual([3, 2]);
    expect(Array.from(fc.data as Float32Array)).toEqual([1, 4, 2, 5, 3, 6]);
    const bias = toTorchTensor('head/fc/b', [3], Float32Array.from([7, 8, 9]));
    expect([bias.name, Array.from(bias.data as Float32Array)]).toEqual(['fc.bias', [7, 8, 9]]);
  });

  it('names heads, predictor, shortcuts and BN fields as torchvision / MoCo do', () => {
    expect(torchName('layer2/0/shortcut/bn/gamma')).toBe('layer2.0.downsample.1.weight');
    expect(torchName('layer3/1/bn2/running_var')).toBe('layer3.1.bn2.running_var');
    expect(torchName('layer4/0/conv3/w')).toBe('layer4.0.conv3.weight'); // bottleneck
    expect(torchName('head/fc1/w')).toBe('fc.0.weight');
    expect(torchName('head/fc2/b')).toBe('fc.2.bias');
    expect(torchName('predictor/bn1/beta')).toBe('predictor.1.bias');
    expect(torchName('predictor/fc2/w')).toBe('predictor.3.weight');
    expect(torchName('bn3/running_mean')).toBe('bn3.running_mean'); // ConvNet
    expect(torchName('prototypes/w')).toBe('prototypes.weight'); // SwAV's
    expect(contrastName('prototypes.weight', { resnet: false })).toBe('prototypes/w');
    expect(contrastName('conv1.weight', { resnet: true })).toBe('stem/conv/w');
    expect(contrastName('conv1.weight', { resnet: false })).toBe('conv1/w');
    expect(contrastName('layer2.0.downsample.1.running_mean', { resnet: true })).toBe(
      'layer2/0/shortcut/bn/running_mean',
    );
    expect(() => torchName('queue/rows')).toThrow(StateError);
    expect(() => contrastName('layer1.0.bn1.num_batches_tracked', { resnet: true })).toThrow(
      StateError,
    );
  });

  it('round-trips every variable of a ResNet with an MLP head and predictor, and of the ConvNet', () => {
    const base = createEncoder(
      spec({ encoder: 'resnet18', width: 0.125, dim: 8, head: 'mlp', hiddenDim: 16 }),
      new Rng(1),
    );
    const predictor = createPredictor(8, 12, new Rng(2));
    const withPredictor = {
      namedVariables: () => new Map([...base.namedVariables(), ...predictor.namedVariables()]),
      dispose: () => {
        base.dispose();
        predictor.dispose();
      },
    };
    const convnet = createEncoder(spec({ encoder: 'convnet', width: 0.25, dim: 8 }, 1), new Rng(3));
    for (const [enc, resnet] of [
      [withPredictor, true],
      [convnet, false],
    ] as const) {
      for (const [name, v] of onHost(enc.namedVariables())) {
        const back = fromTorchTensor(
          toTorchTensor(name, v.shape, v.data) as {
            name: string;
            shape: number[];
            data: Float32Array;
          },
          {
            resnet,
          },
        );
        expect(back.name).toBe(name);
        expect(back.shape).toEqual([...v.shape]);
        expect(back.data).toEqual(v.data);
      }
    }
    withPredictor.dispose();
    convnet.dispose();
  });

  it("an 'mlp-bn' head is PyTorch's Sequential(Linear, BN, ReLU, ..., Linear, BN(affine=False))", () => {
    // SimSiam's projector: 3 linear layers with BN, an affine-free output BN
    const layout = { head: 'mlp-bn', headLayers: 3 } as const;
    const enc = createEncoder(
      spec(
        { encoder: 'convnet', width: 0.25, dim: 8, hiddenDim: 12, ...layout, headOutputBn: true },
        1,
      ),
      new Rng(4),
    );
    const dict = torchStateDict(onHost(enc.namedVariables()), { numBatchesTracked: 7, layout });
    const head = dict.filter((t) => t.name.startsWith('fc'));
    // nn.Sequential(...).state_dict() keys of that module, as PyTorch 2 lists them
    const bn = (i: number) =>
      ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'].map(
        (f) => `fc.${i}.${f}`,
      );
    expect(head.map((t) => t.name)).toEqual([
      'fc.0.weight',
      'fc.0.bias',
      ...bn(1),
      'fc.3.weight',
      'fc.3.bias',
      ...bn(4),
      'fc.6.weight',
      'fc.6.bias',
      'fc.7.running_mean',
      'fc.7.running_var',
      'fc.7.num_batches_tracked',
    ]);
    expect(head.find((t) => t.name === 'fc.6.weight')!.shape).toEqual([8, 12]); // [out, in]
    expect(
      Array.from(head.find((t) => t.name === 'fc.7.num_batches_tracked')!.data as BigInt64Array),
    ).toEqual([7n]);
    // BYOL's projector (2 layers, no output BN): the second Linear is fc.3, not MoCo v2's fc.2
    expect(torchName('head/fc2/w', { head: 'mlp-bn' })).toBe('fc.3.weight');
    expect(torchName('head/fc2/w', { head: 'mlp' })).toBe('fc.2.weight');
    expect(torchName('head/fc3/b', { head: 'mlp', headLayers: 3 })).toBe('fc.4.bias');
    expect(contrastName('fc.4.running_var', { resnet: false, ...layout })).toBe(
      'head/bn2/running_var',
    );
    expect(contrastName('fc.3.weight', { resnet: true, head: 'mlp-bn' })).toBe('head/fc2/w');
    // a BN in the head without its layout, and the fixed scale of an affine-free BN, have no name
    expect(() => torchName('head/bn1/gamma')).toThrow(StateError);
    expect(() => torchName('head/bn_out/gamma', layout)).toThrow(StateError);
    for (const [name, v] of onHost(enc.namedVariables()).filter(([n]) => hasTorchEntry(n))) {
      const t = toTorchTensor(name, v.shape, v.data, layout);
      const back = fromTorchTensor(t as typeof t & { data: Float32Array }, {
        resnet: false,
        ...layout,
      });
      expect([back.name, back.shape, back.data]).toEqual([name, [...v.shape], v.data]);
    }
    enc.dispose();
  });

  it('images go NHWC -> NCHW', () => {
    // [1, 1, 2, 3]: two pixels of RGB
    const { data, shape } = nhwcToNchw(Float32Array.from([1, 2, 3, 4, 5, 6]), [1, 1, 2, 3]);
    expect(shape).toEqual([1, 3, 1, 2]);
    expect(Array.from(data)).toEqual([1, 4, 2, 5, 3, 6]);
  });
});
