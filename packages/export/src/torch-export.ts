import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, ContractError, writeFileAtomic } from '@contrast/core';
import { ENCODER_NAMES, RESNETS, torchStateDict, type TorchTensor } from '@contrast/models';
import { encodeSafetensors } from './safetensors.js';
import type { EncoderSidecar } from './sidecar.js';

/**
 * One line of generated Python: a complete statement and, optionally, a comment
 * after it. The statement may hold no `#` and no line break, and the comment no
 * line break, so no comment can run over code and no text can start a line of
 * its own; `pyLines` refuses anything else. Expressions spliced into statements
 * (the `fc` module) are plain code for the same reason.
 */
interface PyLine {
  code: string;
  comment?: string;
}

/** PyLines as the indented body of a function; throws ContractError on a line that breaks the rule. */
function pyLines(lines: readonly PyLine[], indent = '    '): string {
  return lines
    .map(({ code, comment }) => {
      if (/[#\r\n]/.test(code) || (comment !== undefined && /[\r\n]/.test(comment))) {
        throw new ContractError(
          `torch export: generated line ${JSON.stringify(code)} (comment ${JSON.stringify(comment)}) would not parse as one statement`,
          { hint: 'keep comments in PyLine.comment, never inside code (torch-export.ts)' },
        );
      }
      return comment === undefined ? `${indent}${code}` : `${indent}${code}  # ${comment}`;
    })
    .join('\n');
}

/** Python that builds the torchvision ResNet of `s` (stem, width, channels) with `fc` set. */
function resnetBuild(s: EncoderSidecar, fc: PyLine): PyLine[] {
  const { encoder, stem, block } = s.architecture;
  const width = s.architecture.width ?? 1;
  const net = RESNETS[encoder as keyof typeof RESNETS];
  if (!net) {
    throw new ConfigError('architecture.encoder', `no torch export for '${encoder}'`, {
      hint: `export one of ${ENCODER_NAMES.join(', ')} (or a plugin encoder's weights as npz)`,
    });
  }
  const c = s.input.channels;
  const w0 = Math.max(1, Math.round(64 * width));
  const lines: PyLine[] = [{ code: `model = torchvision.models.${encoder}()` }];
  const custom = width !== 1 || c !== 3;
  if (custom) {
    lines.push({
      code: `model.inplanes = ${w0}`,
      comment: `width ${width}, ${c} channel(s): torchvision's own layers at ${w0} * [1, 2, 4, 8]`,
    });
  }
  if (stem === 'cifar') {
    lines.push({
      code: `model.conv1 = nn.Conv2d(${c}, ${w0}, 3, 1, 1, bias=False)`,
      comment: 'CIFAR stem',
    });
    lines.push({ code: 'model.maxpool = nn.Identity()' });
  } else if (custom) {
    lines.push({ code: `model.conv1 = nn.Conv2d(${c}, ${w0}, 7, 2, 3, bias=False)` });
  }
  if (custom) {
    const blk = (block ?? net.block) === 'bottleneck' ? 'Bottleneck' : 'BasicBlock';
    lines.push({ code: `model.bn1 = nn.BatchNorm2d(${w0})` });
    net.depths.forEach((d, i) => {
      const stride = i === 0 ? '' : ', stride=2';
      lines.push({
        code: `model.layer${i + 1} = model._make_layer(resnet.${blk}, ${w0 * 2 ** i}, ${d}${stride})`,
      });
    });
  }
  lines.push({ code: `model.fc = ${fc.code}`, ...(fc.comment ? { comment: fc.comment } : {}) });
  return lines;
}

/**
 * Python that builds timm's VisionTransformer of `s` (class-token pooling, no
 * classifier: num_classes=0, then `head` set to the projection head or left the
 * identity). timm's defaults are ViT's: qkv bias, LayerNorm eps 1e-6, exact GELU,
 * the final `norm` before the class token.
 */
function vitBuild(s: EncoderSidecar, fc: PyLine): PyLine[] {
  const v = s.architecture.vit!;
  const { height, width, channels } = s.input;
  return [
    {
      code:
        `model = VisionTransformer(img_size=(${height}, ${width}), patch_size=${v.patchSize}, ` +
        `in_chans=${channels}, num_classes=0, global_pool="token", embed_dim=${v.embedDim}, ` +
        `depth=${v.depth}, num_heads=${v.heads}, mlp_ratio=${v.mlpRatio}, qkv_bias=True)`,
    },
    { code: `model.head = ${fc.code}`, ...(fc.comment ? { comment: fc.comment } : {}) },
  ];
}

/** The ConvNet as a module whose state_dict names are torch-names.ts's. */
const CONVNET_CLASS = `
class ConvNet(nn.Module):
    """Contrast's ConvNet: conv3x3-BN-ReLU-maxpool2 x2, conv3x3-BN-ReLU, global average pool."""

    def __init__(self, channels, widths, fc):
        super().__init__()
        cin = channels
        for i, w in enumerate(widths, 1):
            setattr(self, f"conv{i}", nn.Conv2d(cin, w, 3, 1, 1, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(w))
            cin = w
        self.fc = fc

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean((2, 3)))
`;

/**
 * `fc` in PyTorch: identity (features out), MoCo v1's linear, MoCo v2's MLP
 * (Linear-ReLU per hidden layer, then Linear) or an MLP with BN (BYOL / SimSiam:
 * Linear-BatchNorm1d-ReLU per hidden layer, then Linear, then SimSiam's
 * affine-free BatchNorm1d when the head has one), as torch-names.ts indexes it.
 * The expression is `code`; what to say about it goes in `comment`.
 */
function fcModule(s: EncoderSidecar): PyLine {
  const p = s.projection;
  if (!p.included) return { code: 'nn.Identity()', comment: 'fc: outputs the pooled features' };
  if (p.head === 'linear') return { code: `nn.Linear(${s.features.dim}, ${p.dim})` };
  const hidden = p.hiddenDim!;
  const layers: string[] = [];
  let width = s.features.dim;
  for (let i = 0; i < (p.layers ?? 2) - 1; i++) {
    layers.push(`nn.Linear(${width}, ${hidden})`);
    if (p.head === 'mlp-bn') layers.push(`nn.BatchNorm1d(${hidden})`);
    layers.push('nn.ReLU()');
    width = hidden;
  }
  layers.push(`nn.Linear(${width}, ${p.dim})`);
  if (p.outputBn) layers.push(`nn.BatchNorm1d(${p.dim}, affine=False)`);
  return { code: `nn.Sequential(${layers.join(', ')})` };
}

/**
 * `load.py`: builds the PyTorch model the safetensors file fits and loads it
 * strictly (`python load.py` checks it on one zero image). torchvision's
 * ResNets for resnet18/34/50, with the CIFAR stem swapped in and, for width !=
 * 1 or a channel count other than 3, the stages rebuilt by torchvision's own
 * `_make_layer`; the ConvNet as the small module above; ViTs as timm's
 * VisionTransformer with the projection head as its `head`.
 */
export function torchLoader(s: EncoderSidecar): string {
  const fc = fcModule(s);
  const convnet = s.architecture.encoder === 'convnet';
  const vit = s.architecture.vit !== undefined;
  const w = Math.max(1, Math.round(32 * (s.architecture.width ?? 1)));
  const build: PyLine[] = vit
    ? vitBuild(s, fc)
    : convnet
      ? [
          {
            code: `model = ConvNet(${s.input.channels}, [${w}, ${2 * w}, ${4 * w}], ${fc.code})`,
            ...(fc.comment ? { comment: fc.comment } : {}),
          },
        ]
      : resnetBuild(s, fc);
  const { mean, std, height, width, channels } = s.input;
  return `"""Loads Contrast's export into PyTorch (generated by contrast export).

Input: float NCHW [N, ${channels}, ${height}, ${width}], x = (pixels / 255 - mean) / std with
mean = ${JSON.stringify(mean)}, std = ${JSON.stringify(std)}.
Output: ${s.projection.included ? `the projection [N, ${s.projection.dim}] (L2-normalise it for the training embedding)` : `the pooled features [N, ${s.features.dim}]`}.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file
from torchvision.models import resnet
${vit ? 'from timm.models.vision_transformer import VisionTransformer\n' : ''}${convnet ? CONVNET_CLASS : ''}

def build():
${pyLines([...build, { code: 'return model' }])}


def load(path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.safetensors")):
    model = build()
    model.load_state_dict(load_file(path), strict=True)
    return model.eval()


if __name__ == "__main__":
    model = load(*sys.argv[1:])
    with torch.no_grad():
        print(tuple(model(torch.zeros(1, ${channels}, ${height}, ${width})).shape))
`;
}

/**
 * Writes `model.safetensors` (torchvision names and layouts, see torch-names.ts;
 * `num_batches_tracked` = the run's steps) and `load.py` into `dir`, atomically.
 * `named` holds the variables to export (the backbone, plus the head when
 * `sidecar.projection.included`).
 */
export function writeTorchExport(
  dir: string,
  sidecar: EncoderSidecar,
  named: Iterable<readonly [string, { shape: readonly number[]; data: Float32Array }]>,
): { safetensors: string; loader: string; tensors: TorchTensor[] } {
  mkdirSync(dir, { recursive: true });
  const { head, layers } = sidecar.projection;
  const tensors = torchStateDict(named, {
    numBatchesTracked: sidecar.training?.steps ?? 0,
    layout: {
      head,
      ...(layers ? { headLayers: layers } : {}),
      ...(sidecar.architecture.vit ? { headModule: 'head' as const } : {}),
    },
  });
  const metadata = { format: 'pt', contrast: JSON.stringify(sidecar) };
  const safetensors = join(dir, 'model.safetensors');
  writeFileAtomic(safetensors, encodeSafetensors(tensors, metadata));
  const loader = join(dir, 'load.py');
  writeFileAtomic(loader, torchLoader(sidecar));
  return { safetensors, loader, tensors };
}
