import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  composeContrastive,
  defineLoss,
  definePlugin,
  KeyQueue,
  lossOfKind,
  MethodParts,
  methodParameters,
  parseExperiment,
  PluginError,
  QueueSource,
  Rng,
  SharedKeyEncoder,
  BatchKeysSource,
  Tokens,
  z,
  type AugmentationFactory,
  type ContrastiveMethod,
  type ExperimentInput,
  type Loss,
  type Method,
  type OptimizerFactory,
  type Plugin,
} from '@contrast/core';
import { BatchAugmentation } from '@contrast/data';
import { createEncoder } from '@contrast/models';
import { createCatalog } from './catalog.js';
import { testMoco } from './test-utils/moco.js';
import { createOptimizer } from './optimizers.js';
import { createSession } from './session.js';

/** A loss of a kind of its own, with an option: what a Barlow Twins-like loss declares. */
interface PairedLoss extends Loss {
  readonly kind: 'paired';
  readonly lambda: number;
}
const paired = defineLoss({
  kind: 'paired',
  options: z.object({ lambda: z.number().positive().default(0.0051) }).strict(),
  create: (_context, { lambda }): PairedLoss => ({ name: 'toy-paired', kind: 'paired', lambda }),
});

/** A method with no parts of its own: it only shows what build received. */
class Inert extends MethodParts implements Method<undefined> {
  readonly name = 'inert';
  readonly phases = { prepare: [], objective: [], afterStep: [] };
  constructor(readonly loss: Loss) {
    super({});
  }
  parameterGroups() {
    return [];
  }
  prepare(): undefined {
    return undefined;
  }
  objective(): never {
    throw new Error('not trained here');
  }
  afterStep(): void {}
}

const pairedPlugin = definePlugin({
  name: 'pairs',
  description: 'takes a paired loss',
  configSchema: z.object({ name: z.literal('pairs') }).strict(),
  loss: { default: 'toy-paired', kind: 'paired' },
  losses: { 'toy-paired': paired },
  build: (ctx) => new Inert(lossOfKind<PairedLoss>(ctx, ['paired'])),
});

/** MoCo of shared parts: one fork for its queue. */
const moco = testMoco;

/** SimCLR of shared parts: no fork of its own. */
const simclr = definePlugin({
  name: 'simclr',
  description: 'in-batch negatives',
  configSchema: z.object({ name: z.literal('simclr') }).strict(),
  loss: { default: 'nt-xent', kind: 'in-batch', temperature: 0.1 },
  build: (ctx) =>
    composeContrastive(ctx, {
      keyEncoder: new SharedKeyEncoder(ctx.encoder),
      source: new BatchKeysSource('simclr'),
    }),
});

const tiny = {
  name: 'compose',
  data: { trainSubset: 64 },
  model: { encoder: 'convnet', width: 0.25, dim: 8 },
  optim: { batchSize: 16 },
} as const;
const session = (input: Omit<ExperimentInput, 'name'>, plugins: Plugin[] = [moco, pairedPlugin]) =>
  createSession(parseExperiment({ ...tiny, ...input }), createCatalog(plugins));
const configError = (f: () => unknown): ConfigError => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('no error');
};

describe('a loss with its own kind and options', () => {
  it('receives its options from the loss section; the run records them, defaults filled in', () => {
    const s = session({ strategy: { name: 'pairs' }, loss: { lambda: 0.005 } });
    expect((s.method as Inert).loss).toMatchObject({ kind: 'paired', lambda: 0.005 });
    expect(s.config.loss).toEqual({ name: 'toy-paired', symmetric: false, lambda: 0.005 });
    s.dispose();
    const d = session({ strategy: { name: 'pairs' } });
    expect(d.config.loss).toEqual({ name: 'toy-paired', symmetric: false, lambda: 0.0051 });
    d.dispose();
  });

  it('refuses an unknown option naming the field and the known ones, and a bad value', () => {
    const typo = configError(() => session({ strategy: { name: 'pairs' }, loss: { lamda: 1 } }));
    expect(typo.code).toBe('CONTRAST_CONFIG');
    expect(typo.message).toMatch(/loss\.lamda/);
    expect(typo.hint).toBe(
      "did you mean 'lambda'? 'toy-paired' knows: name, temperature, symmetric, lambda",
    );
    const bad = configError(() => session({ strategy: { name: 'pairs' }, loss: { lambda: -1 } }));
    expect(bad.message).toMatch(/loss\.lambda/);
  });

  it("refuses another loss's option for the selected loss, naming whose it is", () => {
    const e = configError(() => session({ strategy: { name: 'moco' }, loss: { lambda: 0.005 } }));
    expect(e.message).toMatch(
      /loss\.lambda.*an option of 'toy-paired', not of the selected loss 'infonce'/,
    );
    expect(e.hint).toMatch(/'infonce' knows: name, temperature, symmetric$/);
  });

  it('a method refuses a loss of a kind it does not accept, listing the acceptable names', () => {
    const e = configError(() =>
      session({ strategy: { name: 'moco' }, loss: { name: 'toy-paired' } }),
    );
    expect(e.message).toMatch(/loss\.name.*'toy-paired' needs a 'paired' input but method 'moco'/);
    expect(e.hint).toBe("use one of: infonce, nce (or leave loss.name out for 'infonce')");
    const back = configError(() =>
      session({ strategy: { name: 'pairs' }, loss: { name: 'infonce' } }),
    );
    expect(back.hint).toBe("use one of: toy-paired (or leave loss.name out for 'toy-paired')");
  });

  it('a method may accept several kinds', () => {
    const both = definePlugin({
      ...pairedPlugin,
      loss: { default: 'toy-paired', kind: ['paired', 'explicit'] },
      build: (ctx) => new Inert(lossOfKind(ctx, ['paired', 'explicit'])),
    });
    const s = session({ strategy: { name: 'pairs' }, loss: { name: 'infonce' } }, [both]);
    expect((s.method as Inert).loss.name).toBe('infonce');
    s.dispose();
  });

  it('lossOfKind stamps the plugin on a loss of another kind', () => {
    const loss = { name: 'infonce', kind: 'explicit' } as Loss;
    expect(() => lossOfKind({ loss, plugin: 'pairs' }, ['paired'])).toThrow(PluginError);
  });
});

/** The main stream's forks by hand: the encoder, `parts` of the method, the augmentation, the data order. */
function handForks(seed: number, parts: number) {
  const main = new Rng(seed);
  const encoder = main.fork();
  const method = Array.from({ length: parts }, () => main.fork());
  return { encoder, method, augmentation: main.fork(), data: main.fork(), main };
}

describe('the composition root forks the random streams in its documented order', () => {
  it('moco: encoder, queue, augmentation, data order (the session built them in this order before)', () => {
    const s = session({ seed: 7, strategy: { name: 'moco' } });
    const f = handForks(7, 1);
    const spec = {
      model: s.config.model,
      input: { height: s.dataset.height, width: s.dataset.width, channels: s.dataset.channels },
    };
    const encoder = createEncoder(spec, f.encoder);
    const mine = encoder.namedVariables();
    const theirs = new Map(s.encoder.namedVariables());
    for (const [name, v] of mine) {
      expect(Array.from(v.dataSync()), name).toEqual(Array.from(theirs.get(name)!.dataSync()));
    }
    const queue = new KeyQueue(64, 8, f.method[0]!);
    const source = (s.method as ContrastiveMethod).parts.source as QueueSource;
    expect(source.queue.keys.arraySync()).toEqual(queue.keys.arraySync());
    expect(s.augmentation.rngState()).toEqual(f.augmentation.getState());
    expect(s.dataRng.getState()).toEqual(f.data.getState());
    expect(s.rng.getState()).toEqual(f.main.getState());
    tf.dispose([queue.keys]);
    encoder.dispose();
    s.dispose();
  });

  it('a method that forks nothing: the augmentation takes fork 2', () => {
    const s = session({ seed: 3, strategy: { name: 'simclr' } }, [simclr]);
    const f = handForks(3, 0);
    expect(s.augmentation.rngState()).toEqual(f.augmentation.getState());
    expect(s.dataRng.getState()).toEqual(f.data.getState());
    s.dispose();
  });
});

describe('a plugin provides parts by token', () => {
  it('its augmentation, optimizer and encoder factories replace the defaults, same streams', () => {
    const seen: { augmentation?: number[]; encoder?: number[] } = {};
    const augmentation: AugmentationFactory = (config, dataset, rng) => {
      seen.augmentation = rng.getState();
      return new BatchAugmentation({ ...config.data.augmentation, flip: 0 }, dataset, rng);
    };
    let parameters = -1;
    const optimizer: OptimizerFactory = (params) => {
      parameters = params.length;
      return createOptimizer(
        params,
        parseExperiment({ name: 'x', strategy: { name: 'moco' } }).optim,
      );
    };
    const providing = definePlugin({
      ...moco,
      provide(container) {
        container.register(Tokens.AugmentationFactory, { useValue: augmentation });
        container.register(Tokens.OptimizerFactory, { useValue: optimizer });
        container.register(Tokens.EncoderFactory, {
          useValue: (spec, rng) => {
            seen.encoder = rng.getState();
            return createEncoder({ ...spec, model: { ...spec.model, dim: 4 } }, rng);
          },
        });
      },
    });
    const s = session({ seed: 5, strategy: { name: 'moco' } }, [providing]);
    const f = handForks(5, 1);
    expect(seen.encoder).toEqual(f.encoder.getState());
    expect(s.encoder.embedDim).toBe(4);
    expect(seen.augmentation).toEqual(f.augmentation.getState());
    expect(s.container.resolve(Tokens.AugmentationFactory)).toBe(augmentation);
    expect(parameters).toBe(methodParameters(s.method).length);
    expect(s.dataRng.getState()).toEqual(f.data.getState());
    s.dispose();
  });
});
