import * as tf from '@tensorflow/tfjs';
import {
  ConfigError,
  l2Normalize,
  nearest,
  parseWith,
  UnknownNameError,
  type Encoder,
  type EncoderEntry,
  type EncoderSpec,
  type Rng,
} from '@contrast/core';
import { defineBackbone, type Backbone, type BackboneEntry } from './backbone.js';
import { BackwardTape } from './backward.js';
import { MlpLayers } from './heads.js';
import type { ArchNode } from './layers.js';
import { nativeBackend } from './native-ops.js';
import { ParamStore } from './params.js';
import {
  ConvNetBackbone,
  ConvNetOptionsSchema,
  RESNETS,
  ResNetBackbone,
  ResNetOptionsSchema,
} from './resnet.js';
import { VIT_PRESETS, VitBackbone, vitOptionsSchema } from './vit.js';

let handWritten = process.env.CONTRAST_AUTODIFF !== '1';

/**
 * Whether training-mode backbones use the hand-written backward (default) or
 * tfjs's generic tape (CONTRAST_AUTODIFF=1 at start; tests and benchmarks compare both).
 */
export function useHandWrittenBackward(on: boolean): void {
  handWritten = on;
}

/**
 * Backbone + projection head to `dim`: linear (MoCo v1), an MLP (MoCo v2,
 * SimCLR) or an MLP with BN (BYOL, SimSiam); `embed` L2-normalises it.
 */
export class ContrastEncoder implements Encoder {
  readonly featureDim: number;
  readonly embedDim: number;
  private readonly store: ParamStore;
  private readonly backbone: Backbone;
  /** The backbone's parameters (the head's follow them in the store). */
  private readonly backboneParams: tf.Variable[];
  /** One linear layer, or an MLP. */
  private readonly head: MlpLayers;
  private readonly entry: BackboneEntry;

  constructor(
    readonly spec: EncoderSpec,
    options: {
      rng?: Rng;
      trainable?: boolean;
      source?: ReadonlyMap<string, tf.Tensor>;
      /** The backbone (default: the built-in one named `spec.model.encoder`). */
      backbone?: BackboneEntry;
    },
  ) {
    const { model, input } = spec;
    this.store = new ParamStore(options.trainable ?? true, options.rng, options.source);
    this.store.bnSplits = model.bnSplits ?? 1;
    this.entry = options.backbone ?? builtinBackbone(model.encoder);
    // the entry's own fields, defaults filled in (already so when the spec comes from a composition)
    const own = parseWith(this.entry.optionsSchema.strip(), model, 'model');
    this.backbone = this.entry.build(this.store, own, input);
    this.featureDim = this.backbone.featureDim;
    this.backboneParams = [...this.store.params];
    const hidden = model.hiddenDim || this.featureDim;
    const layers = model.head === 'linear' ? 1 : (model.headLayers ?? 2);
    this.head = new MlpLayers(this.store, 'head', {
      dims: [this.featureDim, ...Array<number>(layers - 1).fill(hidden), model.dim],
      bn: model.head === 'mlp-bn',
      outputBn: model.head === 'mlp-bn' && (model.headOutputBn ?? false),
    });
    this.embedDim = model.dim;
  }

  get name(): string {
    return this.spec.model.encoder;
  }

  features(x: tf.Tensor4D, training: boolean): tf.Tensor2D {
    return tf.tidy(() => this.pooled(x, training));
  }

  project(x: tf.Tensor4D, training: boolean): tf.Tensor2D {
    return tf.tidy(() => this.head.apply(this.pooled(x, training), training));
  }

  embed(x: tf.Tensor4D, training: boolean): tf.Tensor2D {
    return tf.tidy(() => l2Normalize(this.project(x, training)));
  }

  projectFeatures(features: tf.Tensor2D, training: boolean): tf.Tensor2D {
    return tf.tidy(() => this.head.apply(features, training));
  }

  /**
   * Backbone features. In training mode on the native backend a backbone with a
   * hand-written backward (`train`) is one custom-gradient op running it
   * (backward.ts); the gradient it reports for the images is zero (no method
   * here differentiates w.r.t. pixels). Otherwise tfjs's autodiff differentiates `apply`.
   */
  private pooled(x: tf.Tensor4D, training: boolean): tf.Tensor2D {
    const backbone = this.backbone;
    if (!training || !handWritten || !nativeBackend() || !backbone.train) {
      return backbone.apply(x, training);
    }
    const train = backbone.train.bind(backbone);
    const params = this.backboneParams;
    const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const input = args[0] as tf.Tensor4D;
      const save = args[args.length - 1] as tf.GradSaveFunc;
      const tape = new BackwardTape();
      const { y, back } = train(input, tape);
      save(tape.toSave);
      const shape = input.shape;
      return {
        value: y,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          tape.begin(saved);
          return tf.tidy(() => {
            back(dy as tf.Tensor2D, false);
            return [tf.zeros(shape), ...params.map((p) => tape.grads.get(p) ?? tf.zerosLike(p))];
          });
        },
      };
    });
    return f(x, ...params) as tf.Tensor2D;
  }

  parameters(): tf.Variable[] {
    return this.store.params;
  }

  backboneParameters(): tf.Variable[] {
    return [...this.backboneParams];
  }

  namedVariables(): ReadonlyMap<string, tf.Variable> {
    return this.store.named;
  }

  /**
   * The eval-mode network as operations over named variables, for exporters:
   * `backbone` ends in the global average pool (`features`), `head` maps those
   * features to the projection (`embed` L2-normalises its output).
   */
  describe(): { backbone: ArchNode[]; head: ArchNode[] } {
    if (!this.backbone.describe) {
      throw new ConfigError('model.encoder', `'${this.name}' has no layer-by-layer description`, {
        hint: 'export it with --format torch,npz (the tfjs layers model and the web page need a layer-by-layer description), or give its backbone a describe()',
      });
    }
    return { backbone: this.backbone.describe(), head: this.head.describe() };
  }

  /** Whether `describe` works (the tf.layers export and the web page need it; ViTs have none). */
  get describable(): boolean {
    return this.backbone.describe !== undefined;
  }

  /** The backbone when it is an instance of `kind` (exporters' per-architecture parts), else undefined. */
  backboneOf<B extends Backbone>(kind: abstract new (...args: never[]) => B): B | undefined {
    return this.backbone instanceof kind ? this.backbone : undefined;
  }

  /** Number of scalar parameters of the backbone alone (what `features` computes with). */
  backboneParameterCount(): number {
    return this.backboneParams.reduce((s, v) => s + v.size, 0);
  }

  /** Number of scalar parameters (BN buffers excluded). */
  parameterCount(): number {
    return this.store.params.reduce((s, v) => s + v.size, 0);
  }

  clone(options: { trainable: boolean }): ContrastEncoder {
    return new ContrastEncoder(this.spec, {
      trainable: options.trainable,
      source: this.store.named,
      backbone: this.entry,
    });
  }

  dispose(): void {
    this.store.dispose();
  }
}

/** The built-in backbones by `model.encoder` name. */
export const BACKBONES: Readonly<Record<string, BackboneEntry>> = {
  ...Object.fromEntries(
    Object.entries(RESNETS).map(([name, net]) => [
      name,
      defineBackbone({
        description: `${name} (He et al. 2016), ${net.block} blocks ${net.depths.join('-')}`,
        optionsSchema: ResNetOptionsSchema,
        build: (store, o, input) =>
          new ResNetBackbone(store, net.depths, o.stem, o.width, input.channels, net.block),
      }),
    ]),
  ),
  convnet: defineBackbone({
    description: 'a small ConvNet: three conv-BN-ReLU stages, 32-64-128 channels at width 1',
    optionsSchema: ConvNetOptionsSchema,
    build: (store, o, input) => new ConvNetBackbone(store, o.width, input.channels),
  }),
  ...Object.fromEntries(
    (Object.keys(VIT_PRESETS) as (keyof typeof VIT_PRESETS)[]).map((name) => [
      name,
      defineBackbone({
        description: `Vision Transformer (Dosovitskiy et al. 2021), ${name === 'vit' ? 'free sizes' : name.slice(4)} preset`,
        optionsSchema: vitOptionsSchema(name),
        build: (store, o, input) => new VitBackbone(store, o, input),
      }),
    ]),
  ),
};

/** Names of the built-in encoders. */
export const ENCODER_NAMES: readonly string[] = Object.keys(BACKBONES);

function builtinBackbone(name: string): BackboneEntry {
  const entry = BACKBONES[name];
  if (!entry) {
    const near = nearest(name, ENCODER_NAMES);
    throw new UnknownNameError('encoder', name, ENCODER_NAMES, near);
  }
  return entry;
}

/**
 * A registry entry (`catalog.encoders`) for a backbone: the backbone with the
 * projection head the `model` section describes on top (a ContrastEncoder).
 * What an encoder plugin registers: `encoders: { name: encoderEntry(backbone) }`.
 */
export function encoderEntry(backbone: BackboneEntry): EncoderEntry {
  return {
    description: backbone.description,
    optionsSchema: backbone.optionsSchema,
    create: (spec, rng) => new ContrastEncoder(spec, { rng, backbone }),
  };
}

/** The built-in encoders as registry entries, by name. */
export function builtinEncoders(): Record<string, EncoderEntry> {
  return Object.fromEntries(Object.entries(BACKBONES).map(([n, b]) => [n, encoderEntry(b)]));
}

/** A built-in encoder with fresh weights drawn from `rng`. */
export function createEncoder(spec: EncoderSpec, rng: Rng): ContrastEncoder {
  return new ContrastEncoder(spec, { rng });
}
