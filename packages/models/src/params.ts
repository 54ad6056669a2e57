import * as tf from '@tensorflow/tfjs';
import { ContractError, type Rng } from '@contrast/core';

/**
 * The variables of one network, by stable name. Parameters (what the optimizer
 * trains and an EMA follows) keep creation order, so two structurally identical
 * networks list them in the same order. Buffers (BN running statistics) are state
 * but not parameters.
 */
export class ParamStore {
  readonly named = new Map<string, tf.Variable>();
  /** Sub-batches each BatchNorm normalises separately in training mode (split BN). */
  bnSplits = 1;
  readonly params: tf.Variable[] = [];

  constructor(
    readonly trainable: boolean,
    private readonly rng: Rng | undefined,
    /** Values to copy instead of initialising (cloning). */
    private readonly source?: ReadonlyMap<string, tf.Tensor>,
  ) {}

  private create(
    name: string,
    shape: number[],
    init: () => tf.Tensor,
    isParam: boolean,
  ): tf.Variable {
    if (this.named.has(name)) {
      throw new ContractError(`duplicate variable name '${name}'`, {
        hint: 'give each layer of a network its own name',
      });
    }
    const src = this.source?.get(name);
    if (src && src.shape.join() !== shape.join()) {
      throw new ContractError(`clone: '${name}' has shape [${src.shape}], expected [${shape}]`, {
        hint: 'clone from a network of the same architecture',
      });
    }
    const v = tf.tidy(() => tf.variable(src ? src.clone() : init(), isParam && this.trainable));
    this.named.set(name, v);
    if (isParam) this.params.push(v);
    return v;
  }

  /** He (Kaiming) normal, fan_out, as torchvision's ResNet initialises convs. */
  conv(name: string, k: number, cin: number, cout: number): tf.Variable {
    const shape = [k, k, cin, cout];
    const std = Math.sqrt(2 / (k * k * cout));
    return this.create(
      name,
      shape,
      () => tf.tensor(this.draw().normalArray(k * k * cin * cout, std), shape),
      true,
    );
  }

  /** PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias. */
  linear(name: string, fanIn: number, fanOut: number): { w: tf.Variable; b: tf.Variable } {
    const bound = 1 / Math.sqrt(fanIn);
    const w = this.create(
      `${name}/w`,
      [fanIn, fanOut],
      () => tf.tensor(this.draw().uniformArray(fanIn * fanOut, -bound, bound), [fanIn, fanOut]),
      true,
    );
    const b = this.create(
      `${name}/b`,
      [fanOut],
      () => tf.tensor(this.draw().uniformArray(fanOut, -bound, bound), [fanOut]),
      true,
    );
    return { w, b };
  }

  /**
   * A variable initialised from values `init` draws from the store's Rng (C-order,
   * `shape`'s size): a parameter, or a buffer when `isParam` is false. Clones copy
   * instead and never call `init`.
   */
  drawn(
    name: string,
    shape: number[],
    init: (rng: Rng) => Float32Array,
    isParam = true,
  ): tf.Variable {
    return this.create(name, shape, () => tf.tensor(init(this.draw()), shape), isParam);
  }

  /** A variable holding values that need no random draw (a fixed sin-cos table): a buffer unless `isParam`. */
  fixed(name: string, shape: number[], values: Float32Array, isParam = false): tf.Variable {
    return this.create(name, shape, () => tf.tensor(values, shape), isParam);
  }

  param(name: string, shape: number[], value: number): tf.Variable {
    return this.create(name, shape, () => tf.fill(shape, value), true);
  }

  buffer(name: string, shape: number[], value: number): tf.Variable {
    return this.create(name, shape, () => tf.fill(shape, value), false);
  }

  private draw(): Rng {
    if (!this.rng) {
      throw new ContractError('ParamStore: no Rng to initialise from', {
        hint: 'pass an Rng (or values to copy) when building a network',
      });
    }
    return this.rng;
  }

  dispose(): void {
    for (const v of this.named.values()) v.dispose();
    this.named.clear();
    this.params.length = 0;
  }
}
