import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  checkNames,
  ConfigError,
  parseExperiment,
  PluginError,
  UnknownNameError,
  z,
  type EncoderPlugin,
} from '@contrast/core';
import { defineBackbone, encoderEntry, type Backbone } from '@contrast/models';
import { createCatalog } from './catalog.js';
import { testMoco } from './test-utils/moco.js';
import { createStepHarness } from './harness.js';

const moco = testMoco;

/** An encoder plugin: a linear map of the flattened image, on autodiff (no backward, no describe). */
const linearPlugin: EncoderPlugin = {
  name: 'linear-encoder',
  description: 'flattened pixels times one matrix',
  encoders: {
    'pixel-linear': encoderEntry(
      defineBackbone({
        description: 'flattened pixels -> a linear map -> ReLU',
        optionsSchema: z.object({ features: z.number().int().positive().default(24) }).strict(),
        build(store, o, input): Backbone {
          const size = input.height * input.width * input.channels;
          const { w, b } = store.linear('pixels/fc', size, o.features);
          return {
            featureDim: o.features,
            apply: (x) =>
              tf.relu(
                tf.add(tf.matMul(x.reshape([x.shape[0], size]), w as tf.Tensor2D), b),
              ) as tf.Tensor2D,
          };
        },
      }),
    ),
  },
};

const config = (model: Record<string, unknown>) =>
  parseExperiment({ name: 'enc', model, strategy: { name: 'moco' } });

describe('the encoder registry', () => {
  const catalog = createCatalog([moco, linearPlugin]);

  it('lists the built-in encoders and the ones plugins add', () => {
    expect(catalog.encoders.names()).toEqual([
      'convnet',
      'pixel-linear',
      'resnet18',
      'resnet34',
      'resnet50',
      'vit',
      'vit-small',
      'vit-tiny',
    ]);
  });

  it('an unknown encoder name lists the known ones and the nearest', () => {
    const e = (() => {
      try {
        checkNames(config({ encoder: 'vit-tinny' }), catalog);
      } catch (err) {
        return err as UnknownNameError;
      }
    })();
    expect(e).toBeInstanceOf(UnknownNameError);
    expect(e!.message).toMatch(
      /unknown encoder 'vit-tinny'. Known: convnet, pixel-linear, resnet18/,
    );
    expect(e!.hint).toBe("did you mean 'vit-tiny'?");
  });

  it("an encoder's unknown field is a ConfigError naming it and listing the encoder's and the shared fields", () => {
    const e = (() => {
      try {
        checkNames(config({ encoder: 'vit', depht: 2 }), catalog);
      } catch (err) {
        return err as ConfigError;
      }
    })();
    expect(e).toBeInstanceOf(ConfigError);
    expect(e!.field).toBe('model.depht');
    expect(e!.hint).toMatch(
      /did you mean 'depth'\? Known here: encoder, head, .*patchSize, embedDim, depth, heads, mlpRatio, init/,
    );
    // a ResNet's field is not a ViT's, and a ViT's not a ResNet's
    expect(() => checkNames(config({ encoder: 'vit', stem: 'cifar' }), catalog)).toThrow(
      /model\.stem/,
    );
    expect(() => checkNames(config({ encoder: 'resnet18', heads: 2 }), catalog)).toThrow(
      /model\.heads/,
    );
    expect(() => checkNames(config({ encoder: 'vit', depth: 0 }), catalog)).toThrow(/model\.depth/);
    expect(() =>
      checkNames(config({ encoder: 'pixel-linear', features: 8 }), catalog),
    ).not.toThrow();
  });

  it('the default experiment records its ResNet options as before (width 1, cifar stem)', () => {
    const h = createStepHarness(
      { name: 'd', strategy: { name: 'moco' }, data: { trainSubset: 64 } },
      catalog,
    );
    expect(h.config.model).toMatchObject({ encoder: 'resnet18', width: 1, stem: 'cifar' });
    h.dispose();
  });

  it('refuses a plugin encoder whose name is taken', () => {
    const clash: EncoderPlugin = {
      ...linearPlugin,
      encoders: { vit: linearPlugin.encoders['pixel-linear']! },
    };
    expect(() => createCatalog([clash])).toThrow(PluginError);
    expect(() => createCatalog([clash])).toThrow(/'vit', which exists already/);
    const entry = linearPlugin.encoders['pixel-linear']!;
    const shadow: EncoderPlugin = {
      ...linearPlugin,
      encoders: { mine: { ...entry, optionsSchema: z.object({ dim: z.number() }).strict() } },
    };
    expect(() => createCatalog([shadow])).toThrow(/options named as shared model fields: dim/);
  });

  it("a plugin's encoder trains by name on autodiff, with its own options, without leaking", () => {
    const h = createStepHarness(
      {
        name: 'plugin-encoder',
        data: { trainSubset: 64 },
        model: { encoder: 'pixel-linear', features: 12, dim: 8 },
        strategy: { name: 'moco' },
        optim: { batchSize: 16, lr: 0.1 },
      },
      catalog,
    );
    expect(h.encoder.featureDim).toBe(12);
    const { losses, tensorCounts } = h.run(4);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(tensorCounts[3]).toBe(tensorCounts[1]);
    h.dispose();
  });

  it('a tiny ViT trains a step (every parameter moves) and leaks no tensor', () => {
    const h = createStepHarness(
      {
        name: 'vit-step',
        data: { trainSubset: 64 },
        model: { encoder: 'vit', patchSize: 7, embedDim: 16, depth: 1, heads: 2, dim: 8 },
        strategy: { name: 'moco' },
        optim: { batchSize: 16, lr: 0.1 },
      },
      catalog,
    );
    const params = h.encoder.parameters();
    const before = params.map((p) => Float32Array.from(p.dataSync()));
    const { losses, tensorCounts } = h.run(4);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(tensorCounts[3]).toBe(tensorCounts[1]);
    const moved = params.map((p, i) => p.dataSync().some((v, j) => v !== before[i]![j]));
    expect(moved.every(Boolean)).toBe(true);
    h.dispose();
  });
});
