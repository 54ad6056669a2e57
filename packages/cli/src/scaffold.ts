import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { ConfigError } from '@contrast/core';

/** `queue-nce` -> `QueueNce`. */
const pascal = (name: string) =>
  name.replace(/(^|-)([a-z0-9])/g, (_m, _d: string, c: string) => c.toUpperCase());

/** src/index.ts of a new plugin; __NAME__, __CLASS__ and __FUNCTION__ are filled in. */
const METHOD_TEMPLATE = `import {
  contrastiveLoss,
  definePlugin,
  KeyQueue,
  MethodParts,
  StopGradientKeyEncoder,
  z,
  type ContrastiveLoss,
  type Encoder,
  type KeyEncoderPolicy,
  type Method,
  type Plugin,
  type StepContext,
  type tf,
  type Views,
} from '@contrast/core';

export const PLUGIN_NAME = '__NAME__';

export const __CLASS__ConfigSchema = z
  .object({
    name: z.literal(PLUGIN_NAME),
    /** K: negatives kept in the queue. */
    queueSize: z.number().int().positive().default(4096),
  })
  .strict();
export type __CLASS__Config = z.infer<typeof __CLASS__ConfigSchema>;

/**
 * __NAME__: the key of view 2 comes from the query encoder without gradient,
 * the negatives from a FIFO queue of past keys; loss(q1, k2, queue).
 */
export class __CLASS__ extends MethodParts implements Method<{ key: tf.Tensor2D }> {
  readonly name = PLUGIN_NAME;
  readonly phases = { prepare: ['key'], objective: ['query', 'loss'], afterStep: ['enqueue'] };

  constructor(
    private readonly encoder: Encoder,
    private readonly keys: KeyEncoderPolicy,
    private readonly queue: KeyQueue,
    private readonly loss: ContrastiveLoss,
    private readonly temperature: number,
  ) {
    super({ queue }); // saved in checkpoints as queue/...
  }

  parameterGroups() {
    return [{ params: this.encoder.parameters() }];
  }

  /** Before the tape: the key [N, D], no gradient. */
  prepare(views: Views, ctx: StepContext) {
    const key = this.keys.encode(views.x2)!;
    ctx.mark('key');
    return { key };
  }

  /** Inside the tape: q [N, D] against its key and the queue [K, D]. */
  objective(views: Views, { key }: { key: tf.Tensor2D }, ctx: StepContext) {
    const query = this.encoder.embed(views.x1, true);
    ctx.mark('query');
    const { loss, accuracy } = this.loss.compute({
      query,
      positive: key,
      negatives: this.queue.keys,
      temperature: this.temperature,
    });
    ctx.mark('loss');
    return { loss, metrics: { pretext_accuracy: accuracy } };
  }

  /** After the optimizer step: this batch's keys become negatives. */
  afterStep({ prepared }: { prepared: { key: tf.Tensor2D } }, ctx: StepContext) {
    this.queue.enqueue(prepared.key);
    ctx.mark('enqueue');
  }
}

export function __FUNCTION__Plugin(): Plugin<__CLASS__Config> {
  return definePlugin({
    name: PLUGIN_NAME,
    description: 'stop-gradient keys, a queue of negatives, a contrastive loss',
    configSchema: __CLASS__ConfigSchema,
    loss: { default: 'infonce', kind: 'explicit', temperature: 0.1 },
    build(ctx) {
      const { encoder, options, config } = ctx;
      const queue = new KeyQueue(options.queueSize, encoder.embedDim, ctx.rng.fork());
      const keys = new StopGradientKeyEncoder(encoder);
      return new __CLASS__(encoder, keys, queue, contrastiveLoss(ctx), config.loss.temperature!);
    },
  });
}

export default __FUNCTION__Plugin;
`;

/**
 * The source of a new method plugin (`src/index.ts`): a working method written
 * out phase by phase — stop-gradient keys from the query encoder (no momentum
 * copy), a FIFO queue of negatives, the experiment's contrastive loss — to be
 * edited into the new method. docs/adding-a-method.md shows this file whole.
 */
export function methodTemplate(name: string): string {
  return METHOD_TEMPLATE.replaceAll('__NAME__', name)
    .replaceAll('__CLASS__', pascal(name))
    .replaceAll('__FUNCTION__', camel(name));
}

function camel(name: string): string {
  const p = pascal(name);
  return p.charAt(0).toLowerCase() + p.slice(1);
}

/** The plugin's smoke test: real steps on Fashion-MNIST, no leak, a state round trip. */
function testTemplate(name: string): string {
  return `import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { createCatalog, createStepHarness } from '@contrast/trainer';
import { ${camel(name)}Plugin } from './index.js';

const experiment = {
  name: '${name}-test',
  data: { trainSubset: 512 },
  model: { encoder: 'convnet', width: 0.25, dim: 16 },
  strategy: { name: '${name}', queueSize: 64 },
  optim: { batchSize: 32, lr: 0.05 },
};

describe('${name} plugin', () => {
  it('trains on real data with finite losses and no leaked tensor', () => {
    const h = createStepHarness(experiment, createCatalog([${camel(name)}Plugin()]));
    const { losses, tensorCounts } = h.run(6);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    h.dispose();
  });

  it('saves and restores its state', () => {
    const a = createStepHarness(experiment, createCatalog([${camel(name)}Plugin()]));
    a.run(2);
    const b = createStepHarness(experiment, createCatalog([${camel(name)}Plugin()]));
    const { tensors, values } = a.session.stateBundle();
    const copy = Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, tf.clone(t)]));
    b.session.loadState({ tensors: copy, values });
    const queue = (h: typeof a) => h.session.method.state().queue!.tensors.queue!.dataSync();
    expect(Array.from(queue(b))).toEqual(Array.from(queue(a)));
    a.dispose();
    b.dispose();
  });
});
`;
}

function packageJson(name: string): string {
  const pkg = {
    name: `@contrast/plugin-${name}`,
    version: '0.1.0',
    private: true,
    description: `The ${name} method for Contrast`,
    type: 'module',
    main: './dist/index.js',
    types: './dist/index.d.ts',
    exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' } },
    scripts: {
      build: 'tsc -p tsconfig.build.json',
      typecheck: 'tsc -p tsconfig.json --noEmit',
      test: 'vitest run --config ../../vitest.config.ts --dir .',
    },
    dependencies: { '@contrast/core': 'workspace:*', '@tensorflow/tfjs': '4.22.0' },
    devDependencies: { '@contrast/trainer': 'workspace:*' },
  };
  return `${JSON.stringify(pkg, null, 2)}\n`;
}

const TSCONFIG = `{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": { "rootDir": "src", "outDir": "dist", "tsBuildInfoFile": "dist/.tsbuildinfo" },
  "include": ["src"]
}
`;

/**
 * The plugin's build config. In this repository's plugins/ folder it references the
 * projects of its workspace dependencies, as every package's does, so the root
 * `pnpm build` (`tsc -b`) builds them first and rebuilds the plugin when they change.
 */
function buildTsconfig(root: string): string {
  const refs = ['core', 'trainer']
    .map((p) => join(root, '..', '..', 'packages', p, 'tsconfig.build.json'))
    .filter((f) => existsSync(f))
    .map((f) => `    { "path": "${relative(root, f)}" }`);
  const references = refs.length > 0 ? `,\n  "references": [\n${refs.join(',\n')}\n  ]` : '';
  return `{
  "extends": "./tsconfig.json",
  "compilerOptions": { "composite": true },
  "exclude": ["src/**/*.test.ts"]${references}
}
`;
}

const readme = (name: string) => `# @contrast/plugin-${name}

A method plugin for Contrast (written by \`contrast new-method ${name}\`). The
method is in \`src/index.ts\`: \`prepare\` (before the gradient tape), \`objective\`
(inside it), \`afterStep\` (after the optimizer step). See docs/adding-a-method.md.

Use it: \`strategy: { name: ${name} }\` in an experiment, after
\`pnpm install && pnpm build\` (the command loads workspace
plugins that \`packages/cli\` lists, or any plugin named in \`plugins:\`).

Test it: \`pnpm exec vitest run plugins/${name}\`.
`;

/**
 * \`contrast new-method <name>\`: writes a plugin package (package.json,
 * tsconfig, README, src/index.ts, src/plugin.test.ts) into \`dir\` (default
 * plugins/<name>), whose method trains and whose test passes as written.
 * @throws ConfigError for a name that is not lower-case kebab-case, or a folder that exists.
 */
export function newMethod(name: string, dir = join('plugins', name)): string[] {
  if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(name)) {
    throw new ConfigError('name', `'${name}' is not a plugin name`, {
      hint: 'use lower-case letters, digits and dashes, e.g. my-method',
    });
  }
  const root = resolve(dir);
  if (existsSync(root)) {
    throw new ConfigError('--dir', `${root} exists already`, {
      hint: 'choose another name or --dir; nothing was written',
    });
  }
  const files: Record<string, string> = {
    'package.json': packageJson(name),
    'tsconfig.json': TSCONFIG,
    'tsconfig.build.json': buildTsconfig(root),
    'README.md': readme(name),
    'src/index.ts': methodTemplate(name),
    'src/plugin.test.ts': testTemplate(name),
  };
  mkdirSync(join(root, 'src'), { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(root, file), text);
  return Object.keys(files).map((f) => join(root, f));
}
