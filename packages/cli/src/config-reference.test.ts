import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ExperimentSchema } from '@contrast/core';
import { builtinEncoders } from '@contrast/models';
import { configFields, sourcesIn, typeOf } from './config-reference.js';
import { CONFIG_DOC, configurationDoc } from './docs-config.js';
import { builtinPlugins } from './plugins.js';

describe('docs/configuration.md, generated from the schema', () => {
  it('is up to date (run `pnpm docs:config` after changing a schema or a description)', async () => {
    const expected = await configurationDoc();
    const actual = readFileSync(CONFIG_DOC, 'utf8');
    expect(actual === expected, 'docs/configuration.md is stale: run pnpm docs:config').toBe(true);
  });

  it('every field of the experiment, of every built-in encoder and strategy has a meaning', () => {
    const fields = [
      ...configFields(ExperimentSchema),
      ...Object.values(builtinEncoders()).flatMap((e) => configFields(e.optionsSchema, 'model')),
      ...builtinPlugins().flatMap((p) =>
        configFields(p.configSchema as Parameters<typeof configFields>[0], 'strategy'),
      ),
    ].filter((f) => f.path !== 'strategy.name' || f.description);
    const missing = fields.filter((f) => !f.description && !/\.name$/.test(f.path));
    expect(missing.map((f) => f.path)).toEqual([]);
    expect(fields.length).toBeGreaterThan(60);
  });

  it('rows carry type, default and source', () => {
    // strategies share field names (MoCo's and NNCLR's queueSize): the first plugin's row
    const byPath = Object.fromEntries(
      [
        ...configFields(ExperimentSchema),
        ...builtinPlugins().flatMap((p) =>
          configFields(p.configSchema as Parameters<typeof configFields>[0], 'strategy'),
        ),
      ]
        .reverse()
        .map((f) => [f.path, f]),
    );
    expect(byPath['optim.lr']).toMatchObject({ type: 'number > 0', default: '`0.03`' });
    expect(byPath['data.augmentation.jitter.hue']).toMatchObject({
      type: 'number in [0, 0.5]',
      sources: ['MoCo v1', 'MoCo v2'],
    });
    expect(byPath['strategy.queueSize']).toMatchObject({
      type: 'integer > 0',
      default: '`4096`',
      sources: ['MoCo v1', 'CIFAR demo'],
    });
    expect(byPath['optim.schedule']!.type).toBe('`cosine` or `constant` or `step`');
    expect(byPath['data.augmentation.crop.ratio']!.default).toBe('`[0.75,1.33333]`');
    expect(byPath.name!.default).toBe('required');
  });

  it('types and sources in words', () => {
    expect(typeOf({ type: 'integer', minimum: 0 })).toBe('integer >= 0');
    expect(typeOf({ type: 'array', items: { type: 'number', exclusiveMinimum: 0 } })).toBe(
      'list of (number > 0)',
    );
    expect(sourcesIn('tau: 0.07 in MoCo v1, 0.2 in v2, 0.1 in the CIFAR demo.')).toEqual([
      'MoCo v1',
      'MoCo v2',
      'CIFAR demo',
    ]);
    expect(sourcesIn('Alignment and uniformity (Wang & Isola)')).toEqual(['Wang & Isola']);
  });
});
