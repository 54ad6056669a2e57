import {
  ExperimentSchema,
  type EncoderEntry,
  type OptimizerEntry,
  type Plugin,
} from '@contrast/core';
import { builtinEncoders } from '@contrast/models';
import type { ZodTypeAny } from 'zod';
import { zodToJsonSchema } from 'zod-to-json-schema';

/** The JSON Schema subset zod-to-json-schema emits for the experiment schema. */
interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema | JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
}

/** One row of the reference: a dotted field path, its type, default, meaning and sources. */
export interface ConfigField {
  path: string;
  type: string;
  default: string;
  description: string;
  /** Keys of SOURCES that the description names. */
  sources: string[];
}

/** The papers and code that descriptions cite, by the name they use. */
export const SOURCES: Record<string, string> = {
  'MoCo v1':
    'He, Fan, Wu, Xie, Girshick. Momentum Contrast for Unsupervised Visual Representation Learning. CVPR 2020.',
  'MoCo v2':
    'Chen, Fan, Girshick, He. Improved Baselines with Momentum Contrastive Learning. arXiv:2003.04297, 2020.',
  'MoCo v3':
    'Chen, Xie, He. An Empirical Study of Training Self-Supervised Vision Transformers. ICCV 2021.',
  'CIFAR demo':
    "MoCo's official CIFAR-10 demo notebook (facebookresearch/moco, colab-notebook branch): ResNet-18, K 4096, m 0.99, tau 0.1, kNN k 200 t 0.1.",
  SimCLR:
    'Chen, Kornblith, Norouzi, Hinton. A Simple Framework for Contrastive Learning of Visual Representations. ICML 2020.',
  InstDisc:
    'Wu, Xiong, Yu, Lin. Unsupervised Feature Learning via Non-Parametric Instance Discrimination. CVPR 2018.',
  BYOL: 'Grill et al. Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning. NeurIPS 2020.',
  'Wang & Isola':
    'Wang, Isola. Understanding Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere. ICML 2020.',
  DINO: 'Caron et al. Emerging Properties in Self-Supervised Vision Transformers. ICCV 2021.',
  LARS: 'You, Gitman, Ginsburg. Large Batch Training of Convolutional Networks. arXiv:1708.03888, 2017.',
  torchvision:
    'torchvision.transforms (RandomResizedCrop, ColorJitter, GaussianBlur), whose semantics the augmentations follow.',
  ViT: 'Dosovitskiy et al. An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale. ICLR 2021.',
  timm: 'Wightman. PyTorch Image Models (timm): timm.models.vision_transformer.VisionTransformer, whose layers, names and initialisation the ViT follows.',
};

/** Which sources a description names; after "MoCo", a bare "v2" is MoCo v2 ("MoCo v1/v2"). */
export function sourcesIn(text: string): string[] {
  const t = text.includes('MoCo') ? text.replace(/\b(?:MoCo )?v([123])\b/g, 'MoCo v$1') : text;
  return Object.keys(SOURCES).filter((k) => t.includes(k));
}

const num = (x: number) => String(Number(x.toPrecision(6)));

/** A field's type in words: `integer >= 0`, `number in [0, 1]`, `'cosine' | 'step'`, ... */
export function typeOf(s: JsonSchema): string {
  if (s.const !== undefined) return `\`${String(s.const)}\``;
  if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(' or ');
  if (s.type === 'array') {
    if (Array.isArray(s.items)) return `[${s.items.map(typeOf).join(', ')}]`;
    return s.items ? `list of (${typeOf(s.items)})` : 'list';
  }
  const base = s.type ?? 'any';
  if (s.minimum !== undefined && s.maximum !== undefined) {
    return `${base} in [${num(s.minimum)}, ${num(s.maximum)}]`;
  }
  const bounds = [
    s.exclusiveMinimum !== undefined ? `> ${num(s.exclusiveMinimum)}` : '',
    s.minimum !== undefined ? `>= ${num(s.minimum)}` : '',
    s.exclusiveMaximum !== undefined ? `< ${num(s.exclusiveMaximum)}` : '',
    s.maximum !== undefined ? `<= ${num(s.maximum)}` : '',
  ].filter(Boolean);
  return bounds.length ? `${base} ${bounds.join(', ')}` : base;
}

function defaultOf(s: JsonSchema, required: boolean): string {
  if (s.default === undefined) return required ? 'required' : '(none)';
  if (typeof s.default === 'object' && s.default !== null && !Array.isArray(s.default)) return '';
  return `\`${JSON.stringify(s.default, (_k, v: unknown) => (typeof v === 'number' ? Number(num(v)) : v))}\``;
}

/** Every field of a zod object schema, depth first: groups (objects) and their leaves. */
export function configFields(schema: ZodTypeAny, prefix = ''): ConfigField[] {
  const root = zodToJsonSchema(schema, { $refStrategy: 'none', effectStrategy: 'input' });
  const out: ConfigField[] = [];
  const walk = (s: JsonSchema, path: string, required: boolean, leaf = false) => {
    const description = s.description ?? '';
    const group = s.type === 'object' && s.properties;
    out.push({
      path,
      type: group ? 'object' : typeOf(s),
      default: defaultOf(s, required),
      description,
      sources: sourcesIn(description),
    });
    if (leaf) return;
    for (const [k, child] of Object.entries(group ? s.properties! : {})) {
      walk(child, `${path}.${k}`, s.required?.includes(k) ?? false);
    }
    // a list of sections (data.views): its items' own fields as `path[].field`, one level
    const item = s.type === 'array' && !Array.isArray(s.items) ? s.items : undefined;
    for (const [k, child] of Object.entries(item?.properties ?? {})) {
      walk(child, `${path}[].${k}`, item!.required?.includes(k) ?? false, true);
    }
  };
  const top = root as JsonSchema;
  for (const [k, child] of Object.entries(top.properties ?? {})) {
    walk(child, prefix ? `${prefix}.${k}` : k, top.required?.includes(k) ?? false);
  }
  return out;
}

/** Table-cell text: pipes escaped, and `<` so that `data/<name>` is not read as an HTML tag. */
const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/\n/g, ' ');

function table(fields: readonly ConfigField[]): string {
  const rows = fields.map(
    (f) =>
      `| \`${f.path}\` | ${cell(f.type)} | ${cell(f.default)} | ${cell(f.description)} | ${f.sources.join(', ')} |`,
  );
  return [
    '| field | type | default | meaning | source |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

/** One section per plugin loss with options of its own (`loss.name: barlow-twins`: its `lambda`). */
function lossOptionSections(plugins: readonly Plugin[]): string[] {
  const out: string[] = [];
  const losses = plugins.flatMap((p) =>
    Object.entries(p.losses ?? {}).map(([n, e]) => ({ n, e, p })),
  );
  for (const { n, e, p } of losses.sort((a, b) => a.n.localeCompare(b.n))) {
    if (!e.options) continue;
    out.push(`### \`loss.name: ${n}\``, `A '${e.kind}' loss of the ${p.name} plugin.`);
    out.push(table(configFields(e.options as ZodTypeAny, 'loss')));
  }
  return out;
}

/** One section per encoder options schema (encoders sharing a schema, the ResNets, share one). */
function encoderSections(
  encoders: Readonly<Record<string, Pick<EncoderEntry, 'description' | 'optionsSchema'>>>,
): string[] {
  const bySchema = new Map<unknown, string[]>();
  for (const name of Object.keys(encoders).sort()) {
    const schema = encoders[name]!.optionsSchema;
    bySchema.set(schema, [...(bySchema.get(schema) ?? []), name]);
  }
  return [...bySchema.values()].flatMap((names) => {
    const entry = encoders[names[0]!]!;
    const own = configFields(entry.optionsSchema, 'model');
    const title = names.map((n) => `\`model.encoder: ${n}\``).join(', ');
    const about = names.map((n) => encoders[n]!.description).join('; ');
    return [`### ${title}`, `${about}.`, own.length ? table(own) : 'No options of its own.'];
  });
}

/**
 * docs/configuration.md: every field of the experiment schema, of each
 * encoder's options (`encoders`, default the built-in ones) and of each
 * strategy plugin's configSchema, with its type, default, meaning (the zod
 * `.describe()` text, the one source of truth) and the papers it cites.
 */
export function configurationMarkdown(
  plugins: readonly Plugin[],
  optimizers: Readonly<Record<string, OptimizerEntry>> = {},
  encoders: Readonly<
    Record<string, Pick<EncoderEntry, 'description' | 'optionsSchema'>>
  > = builtinEncoders(),
): string {
  const fields = configFields(ExperimentSchema);
  const sections = fields.filter((f) => !f.path.includes('.') && f.type === 'object');
  const scalars = fields.filter((f) => !f.path.includes('.') && f.type !== 'object');
  const parts = [
    '# Configuration reference',
    '<!-- generated by `pnpm docs:config` from packages/core/src/schema.ts and the strategy plugins; do not edit -->',
    'An experiment is a YAML file of the fields below (`extends: other.yaml` merges another file first). Any field can be overridden on the command line with `--set path=value` (YAML-typed: `--set data.augmentation.crop.scale=[0.08,1]`). Unknown fields, wrong types and out-of-range values are refused with the field name and the fix.',
    '## Top level',
    table(scalars),
  ];
  for (const s of sections) {
    parts.push(
      `## \`${s.path}\``,
      s.description,
      table(fields.filter((f) => f.path.startsWith(`${s.path}.`))),
    );
    if (s.path === 'loss') parts.push(...lossOptionSections(plugins));
    if (s.path === 'optim') parts.push(...optimizerSections(optimizers));
    if (s.path === 'model') parts.push(...encoderSections(encoders));
    if (s.path !== 'strategy') continue;
    for (const p of [...plugins].sort((a, b) => a.name.localeCompare(b.name))) {
      const own = configFields(p.configSchema as ZodTypeAny, 'strategy').filter(
        (f) => f.path !== 'strategy.name',
      );
      parts.push(`### \`strategy.name: ${p.name}\``, p.description);
      parts.push(own.length ? table(own) : 'No settings besides the name.');
    }
  }
  const cited = fields.flatMap((f) => f.sources);
  for (const o of Object.values(optimizers)) {
    for (const f of configFields(o.optionsSchema as ZodTypeAny)) cited.push(...f.sources);
  }
  for (const p of plugins) {
    for (const f of configFields(p.configSchema as ZodTypeAny)) cited.push(...f.sources);
  }
  for (const e of Object.values(encoders)) {
    for (const f of configFields(e.optionsSchema)) cited.push(...f.sources);
  }
  const listed = Object.keys(SOURCES).filter((k) => cited.includes(k));
  parts.push('## Sources', listed.map((k) => `- **${k}**: ${SOURCES[k]}`).join('\n'));
  return `${parts.join('\n\n')}\n`;
}

/** One subsection per optimizer: its description and its own `optim` fields. */
function optimizerSections(optimizers: Readonly<Record<string, OptimizerEntry>>): string[] {
  return Object.keys(optimizers)
    .sort()
    .flatMap((name) => {
      const entry = optimizers[name]!;
      const own = configFields(entry.optionsSchema as ZodTypeAny, 'optim');
      return [
        `### \`optim.optimizer: ${name}\``,
        entry.description,
        own.length ? table(own) : 'No settings of its own.',
      ];
    });
}
