import * as tf from '@tensorflow/tfjs';
import { z } from '@contrast/core';
import type { Backbone } from './backbone.js';
import { backThrough, type BackwardTape, type Backward, type Traced } from './backward.js';
import {
  BatchNorm,
  Conv,
  maxPoolTrain,
  meanPoolTrain,
  reluTrain,
  type ArchNode,
} from './layers.js';
import { ParamStore } from './params.js';

/** conv -> BN (-> ReLU) as exporters see it. */
const convBnNodes = (conv: Conv, bn: BatchNorm, relu: boolean): ArchNode[] => [
  conv.describe(),
  bn.describe(),
  ...(relu ? [{ kind: 'relu' } as const] : []),
];

/** conv -> BN (-> ReLU): the forward of a chain and the backwards in order. */
function convBn(conv: Conv, bn: BatchNorm, x: tf.Tensor4D, tape: BackwardTape, relu: boolean) {
  const c = conv.train(x, tape);
  const b = bn.train(c.y, tape);
  const steps: Backward[] = [c.back, b.back];
  if (!relu) return { y: b.y, steps };
  const r = reluTrain(b.y, tape);
  // BN's output is not needed by any backward (the ReLU keeps its own output): free it
  // now rather than at the end of the backbone's forward
  b.y.dispose();
  return { y: r.y, steps: [...steps, r.back] };
}

/** A residual block's backward: through relu(main + shortcut) into both branches. */
function residual(
  main: Backward[],
  shortcut: Backward[],
  mainY: tf.Tensor4D,
  shortY: tf.Tensor4D,
  tape: BackwardTape,
): Traced {
  const sum = tf.add(mainY, shortY) as tf.Tensor4D;
  const out = reluTrain(sum, tape);
  // the branch outputs and their sum are needed by no backward (the identity input
  // is, as the block's first conv input): free them now
  tf.dispose([sum, mainY, ...(shortcut.length > 0 ? [shortY] : [])]);
  return {
    y: out.y,
    back: (dy, needDx) => {
      const ds = out.back(dy, true)!;
      const dMain = backThrough(main, ds, needDx);
      const dShort = shortcut.length > 0 ? backThrough(shortcut, ds, needDx) : ds;
      if (!needDx) {
        tf.dispose([ds, dMain ?? [], dShort ?? []]);
        return undefined;
      }
      const dx = tf.add(dMain!, dShort!) as tf.Tensor4D;
      tf.dispose([ds, dMain!, dShort!]);
      return dx;
    },
  };
}

class BasicBlock {
  private readonly conv1: Conv;
  private readonly bn1: BatchNorm;
  private readonly conv2: Conv;
  private readonly bn2: BatchNorm;
  private readonly shortcut?: { conv: Conv; bn: BatchNorm };

  constructor(s: ParamStore, name: string, cin: number, cout: number, stride: number) {
    this.conv1 = new Conv(s, `${name}/conv1`, 3, cin, cout, stride, 1);
    this.bn1 = new BatchNorm(s, `${name}/bn1`, cout);
    this.conv2 = new Conv(s, `${name}/conv2`, 3, cout, cout, 1, 1);
    this.bn2 = new BatchNorm(s, `${name}/bn2`, cout);
    if (stride !== 1 || cin !== cout) {
      this.shortcut = {
        conv: new Conv(s, `${name}/shortcut/conv`, 1, cin, cout, stride, 0),
        bn: new BatchNorm(s, `${name}/shortcut/bn`, cout),
      };
    }
  }

  apply(x: tf.Tensor4D, training: boolean): tf.Tensor4D {
    let y = tf.relu(this.bn1.apply(this.conv1.apply(x), training));
    y = this.bn2.apply(this.conv2.apply(y), training);
    const id = this.shortcut ? this.shortcut.bn.apply(this.shortcut.conv.apply(x), training) : x;
    return tf.relu(tf.add(y, id)) as tf.Tensor4D;
  }

  describe(): ArchNode {
    const sc = this.shortcut;
    return {
      kind: 'residual',
      main: [
        ...convBnNodes(this.conv1, this.bn1, true),
        ...convBnNodes(this.conv2, this.bn2, false),
      ],
      shortcut: sc ? convBnNodes(sc.conv, sc.bn, false) : [],
    };
  }

  train(x: tf.Tensor4D, tape: BackwardTape): Traced {
    const a = convBn(this.conv1, this.bn1, x, tape, true);
    const b = convBn(this.conv2, this.bn2, a.y, tape, false);
    const sc = this.shortcut
      ? convBn(this.shortcut.conv, this.shortcut.bn, x, tape, false)
      : undefined;
    return residual([...a.steps, ...b.steps], sc?.steps ?? [], b.y, sc?.y ?? x, tape);
  }
}

/**
 * Bottleneck block (ResNet-50 and deeper, torchvision's "v1.5": the stride sits
 * on the 3x3 conv): 1x1 reduce -> 3x3 -> 1x1 expand (x4), projection shortcut
 * when the shape changes.
 */
class Bottleneck {
  static readonly expansion = 4;
  private readonly convs: Conv[];
  private readonly bns: BatchNorm[];
  private readonly shortcut?: { conv: Conv; bn: BatchNorm };

  constructor(s: ParamStore, name: string, cin: number, mid: number, stride: number) {
    const cout = mid * Bottleneck.expansion;
    this.convs = [
      new Conv(s, `${name}/conv1`, 1, cin, mid, 1, 0),
      new Conv(s, `${name}/conv2`, 3, mid, mid, stride, 1),
      new Conv(s, `${name}/conv3`, 1, mid, cout, 1, 0),
    ];
    this.bns = [
      new BatchNorm(s, `${name}/bn1`, mid),
      new BatchNorm(s, `${name}/bn2`, mid),
      new BatchNorm(s, `${name}/bn3`, cout),
    ];
    if (stride !== 1 || cin !== cout) {
      this.shortcut = {
        conv: new Conv(s, `${name}/shortcut/conv`, 1, cin, cout, stride, 0),
        bn: new BatchNorm(s, `${name}/shortcut/bn`, cout),
      };
    }
  }

  apply(x: tf.Tensor4D, training: boolean): tf.Tensor4D {
    let y = x;
    this.convs.forEach((conv, i) => {
      y = this.bns[i]!.apply(conv.apply(y), training);
      if (i < 2) y = tf.relu(y);
    });
    const id = this.shortcut ? this.shortcut.bn.apply(this.shortcut.conv.apply(x), training) : x;
    return tf.relu(tf.add(y, id)) as tf.Tensor4D;
  }

  describe(): ArchNode {
    const sc = this.shortcut;
    return {
      kind: 'residual',
      main: this.convs.flatMap((conv, i) => convBnNodes(conv, this.bns[i]!, i < 2)),
      shortcut: sc ? convBnNodes(sc.conv, sc.bn, false) : [],
    };
  }

  train(x: tf.Tensor4D, tape: BackwardTape): Traced {
    let y = x;
    const steps: Backward[] = [];
    this.convs.forEach((conv, i) => {
      const c = convBn(conv, this.bns[i]!, y, tape, i < 2);
      steps.push(...c.steps);
      y = c.y;
    });
    const sc = this.shortcut
      ? convBn(this.shortcut.conv, this.shortcut.bn, x, tape, false)
      : undefined;
    return residual(steps, sc?.steps ?? [], y, sc?.y ?? x, tape);
  }
}

/** Blocks per stage and block type of each ResNet. */
export const RESNETS = {
  resnet18: { depths: [2, 2, 2, 2], block: 'basic' },
  resnet34: { depths: [3, 4, 6, 3], block: 'basic' },
  resnet50: { depths: [3, 4, 6, 3], block: 'bottleneck' },
} as const;

/**
 * ResNet with basic blocks (He et al. 2016). Stems: 'cifar' = 3x3 conv stride 1,
 * no max-pool (the MoCo CIFAR demo's); 'imagenet' = 7x7 stride 2 + 3x3 max-pool.
 * Widths are 64 * width * [1, 2, 4, 8].
 */
export class ResNetBackbone implements Backbone {
  readonly featureDim: number;
  private readonly stemConv: Conv;
  private readonly stemBn: BatchNorm;
  private readonly blocks: {
    apply(x: tf.Tensor4D, training: boolean): tf.Tensor4D;
    train(x: tf.Tensor4D, tape: BackwardTape): Traced;
    describe(): ArchNode;
  }[] = [];

  constructor(
    s: ParamStore,
    depths: readonly number[],
    stem: 'cifar' | 'imagenet',
    width: number,
    channels: number,
    block: 'basic' | 'bottleneck' = 'basic',
  ) {
    const w0 = Math.max(1, Math.round(64 * width));
    this.stemConv =
      stem === 'cifar'
        ? new Conv(s, 'stem/conv', 3, channels, w0, 1, 1)
        : new Conv(s, 'stem/conv', 7, channels, w0, 2, 3);
    this.stemBn = new BatchNorm(s, 'stem/bn', w0);
    this.maxPool = stem === 'imagenet';
    let cin = w0;
    depths.forEach((count, stage) => {
      const planes = w0 * 2 ** stage;
      for (let i = 0; i < count; i++) {
        const name = `layer${stage + 1}/${i}`;
        const stride = i === 0 && stage > 0 ? 2 : 1;
        if (block === 'bottleneck') {
          this.blocks.push(new Bottleneck(s, name, cin, planes, stride));
          cin = planes * Bottleneck.expansion;
        } else {
          this.blocks.push(new BasicBlock(s, name, cin, planes, stride));
          cin = planes;
        }
      }
    });
    this.featureDim = cin;
  }

  private readonly maxPool: boolean;

  apply(x: tf.Tensor4D, training: boolean): tf.Tensor2D {
    const stem = (t: tf.Tensor4D) => {
      const y = tf.relu(this.stemBn.apply(this.stemConv.apply(t), training));
      if (!this.maxPool) return y;
      const pad: [number, number][] = [
        [0, 0],
        [1, 1],
        [1, 1],
        [0, 0],
      ];
      return tf.maxPool(tf.pad(y, pad, -Infinity), 3, 2, 'valid');
    };
    const blocks = this.blocks.map((b) => (t: tf.Tensor4D) => b.apply(t, training));
    return pool(layerByLayer(x, [stem, ...blocks], training), x, training);
  }

  describe(): ArchNode[] {
    return [
      ...convBnNodes(this.stemConv, this.stemBn, true),
      ...(this.maxPool ? [{ kind: 'maxpool', size: 3, stride: 2, pad: 1 } as const] : []),
      ...this.blocks.map((b) => b.describe()),
      { kind: 'pool' },
    ];
  }

  train(x: tf.Tensor4D, tape: BackwardTape): Traced<tf.Tensor2D> {
    const stem = convBn(this.stemConv, this.stemBn, x, tape, true);
    const steps = [...stem.steps];
    let y = stem.y;
    if (this.maxPool) {
      const p = maxPoolTrain(y, tape, 3, 2, 1);
      steps.push(p.back);
      y = p.y;
    }
    for (const b of this.blocks) {
      const t = b.train(y, tape);
      steps.push(t.back);
      y = t.y;
    }
    return pooled(y, steps);
  }
}

/**
 * Runs `layers` one after another on x [N, H, W, C]. In inference (`training`
 * false) each layer runs in its own tidy and its input is freed once it has run
 * (never x), so only one layer's intermediates are alive at a time and a large
 * evaluation batch needs a fraction of the memory; in training everything is
 * kept, as the gradient needs it.
 */
function layerByLayer(
  x: tf.Tensor4D,
  layers: readonly ((t: tf.Tensor4D) => tf.Tensor4D)[],
  training: boolean,
): tf.Tensor4D {
  let y = x;
  for (const layer of layers) {
    if (training) {
      y = layer(y);
      continue;
    }
    const input = y;
    y = tf.tidy(() => layer(input));
    if (input !== x && input !== y) input.dispose();
  }
  return y;
}

/** Global average pooling [N, H, W, C] -> [N, C]; in inference y is freed (unless it is x). */
function pool(y: tf.Tensor4D, x: tf.Tensor4D, training: boolean): tf.Tensor2D {
  const out = tf.mean(y, [1, 2]) as tf.Tensor2D;
  if (!training && y !== x) y.dispose();
  return out;
}

/** Global average pooling on top of a chain of backwards. */
function pooled(y: tf.Tensor4D, steps: Backward[]): Traced<tf.Tensor2D> {
  const pool = meanPoolTrain(y);
  return {
    y: pool.y,
    back: (dy, needDx) => {
      const d = pool.back(dy);
      const dx = backThrough(steps, d, needDx);
      d.dispose();
      return dx;
    },
  };
}

/** A small ConvNet for tests and quick experiments: three conv-BN-ReLU stages. */
export class ConvNetBackbone implements Backbone {
  readonly featureDim: number;
  private readonly stages: { conv: Conv; bn: BatchNorm; pool: boolean }[] = [];

  constructor(s: ParamStore, width: number, channels: number) {
    const w = Math.max(1, Math.round(32 * width));
    const widths = [w, 2 * w, 4 * w];
    let cin = channels;
    widths.forEach((cout, i) => {
      this.stages.push({
        conv: new Conv(s, `conv${i + 1}`, 3, cin, cout, 1, 1),
        bn: new BatchNorm(s, `bn${i + 1}`, cout),
        pool: i < 2,
      });
      cin = cout;
    });
    this.featureDim = cin;
  }

  apply(x: tf.Tensor4D, training: boolean): tf.Tensor2D {
    const stages = this.stages.map((st) => (t: tf.Tensor4D) => {
      const y = tf.relu(st.bn.apply(st.conv.apply(t), training));
      return st.pool ? tf.maxPool(y, 2, 2, 'valid') : y;
    });
    return pool(layerByLayer(x, stages, training), x, training);
  }

  describe(): ArchNode[] {
    return [
      ...this.stages.flatMap((st) => [
        ...convBnNodes(st.conv, st.bn, true),
        ...(st.pool ? [{ kind: 'maxpool', size: 2, stride: 2, pad: 0 } as const] : []),
      ]),
      { kind: 'pool' },
    ];
  }

  train(x: tf.Tensor4D, tape: BackwardTape): Traced<tf.Tensor2D> {
    let y = x;
    const steps: Backward[] = [];
    for (const st of this.stages) {
      const c = convBn(st.conv, st.bn, y, tape, true);
      steps.push(...c.steps);
      y = c.y;
      if (st.pool) {
        const p = maxPoolTrain(y, tape, 2, 2);
        steps.push(p.back);
        y = p.y;
      }
    }
    return pooled(y, steps);
  }
}

/** A ResNet's own `model` fields. */
export const ResNetOptionsSchema = z
  .object({
    width: z
      .number()
      .positive()
      .default(1)
      .describe('Width multiplier: stage widths 64 * width * [1, 2, 4, 8].'),
    stem: z
      .enum(['cifar', 'imagenet'])
      .default('cifar')
      .describe(
        "ResNet stem: 'cifar' (3x3 conv, no max-pool, for 32x32 images) or 'imagenet' (7x7 stride-2 conv + max-pool).",
      ),
  })
  .strict();

/** The ConvNet's own `model` fields. */
export const ConvNetOptionsSchema = z
  .object({
    width: z
      .number()
      .positive()
      .default(1)
      .describe('Width multiplier: stage widths 32 * width * [1, 2, 4].'),
    stem: z
      .enum(['cifar', 'imagenet'])
      .default('cifar')
      .describe(
        "Not used (the ConvNet has no stem); kept, with the ResNets' default, so that ConvNet configs read and record as they did when every model had a stem.",
      ),
  })
  .strict();
