import { parseArgs } from 'node:util';
import { initBackend } from '@contrast/backend';
import { ConfigError } from '@contrast/core';
import { embed, openFeatureSource } from '@contrast/export';
import { createCatalog } from '@contrast/trainer';
import { builtinPlugins } from '../plugins.js';

export const EMBED_USAGE = `  embed <run-or-export> <folder|dataset[:split]> --out FILE.npy [--no-normalize] [--batch N] [--strict]
                                                 features of every image as float32 [N, F] .npy (rows
                                                 L2-normalised) + FILE.csv of ids and labels
`;

/** `contrast embed <run|export> <target> --out FILE`: see @contrast/export's embed. */
export async function embedCommand(args: string[], usage: string): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      'no-normalize': { type: 'boolean' },
      batch: { type: 'string' },
      strict: { type: 'boolean' },
      quiet: { type: 'boolean' },
    },
  });
  const [source, target] = positionals;
  if (!source || !target) {
    process.stderr.write(usage);
    return 2;
  }
  if (!values.out) throw new ConfigError('--out', 'embed needs --out FILE.npy');
  const batchSize = values.batch === undefined ? 256 : Number(values.batch);
  if (!(Number.isInteger(batchSize) && batchSize > 0)) {
    throw new ConfigError('--batch', `must be a whole number > 0, got '${values.batch}'`);
  }
  await initBackend();
  const catalog = createCatalog(builtinPlugins());
  const model = await openFeatureSource(source, catalog);
  try {
    const r = await embed(model, target, catalog, {
      out: values.out,
      normalize: !values['no-normalize'],
      batchSize,
      strict: values.strict ?? false,
      progress: !values.quiet,
    });
    if (r.skipped.length > 0) {
      process.stderr.write(
        `skipped ${r.skipped.length} unreadable file(s):\n${r.skipped.map((s) => `  ${s}`).join('\n')}\n`,
      );
    }
    process.stdout.write(
      `${r.rows} x ${r.dim} features in ${r.seconds.toFixed(1)} s; ${r.skipped.length} skipped\n${r.npy}\n${r.csv}\n`,
    );
    return 0;
  } finally {
    model.dispose();
  }
}
