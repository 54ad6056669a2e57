import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { jsonOption, numberArg, quietOption } from '../options.js';
import { Output } from '../output.js';

interface EmbedFlags {
  out: string;
  normalize: boolean;
  batch: number;
  strict?: boolean;
  quiet?: boolean;
  json?: boolean;
}

const HELP = `
Writes FILE.npy, float32 [N, F] (rows L2-normalised unless --no-normalize), and
FILE.csv with each row's id and label.

Examples:
  contrast embed runs/<run> fashion-mnist:test --out features.npy
  contrast embed runs/<run>/export photos/ --out photos.npy --strict`;

/** `contrast embed`: features of a folder or a dataset split with a trained encoder. */
export function registerEmbed(program: Command, ctx: CliContext): void {
  program
    .command('embed')
    .description('features of every image of a folder or dataset split, as .npy + .csv')
    .argument('<run-or-export>', 'a run folder or the folder contrast export wrote')
    .argument('<target>', 'an image folder, or dataset[:split] (e.g. fashion-mnist:test)')
    .requiredOption('--out <file.npy>', 'where to write the features')
    .option('--no-normalize', 'keep the raw pooled features (default: L2-normalised rows)')
    .option(
      '--batch <n>',
      'images per forward pass',
      numberArg({ min: 1, integer: true }, '--batch 256'),
      256,
    )
    .option('--strict', 'fail on an unreadable image instead of skipping and listing it')
    .addOption(quietOption())
    .addOption(jsonOption())
    .addHelpText('after', HELP)
    .action(async (source: string, target: string, flags: EmbedFlags) => {
      ctx.exitCode = await embedCommand(source, target, flags);
    });
}

async function embedCommand(source: string, target: string, flags: EmbedFlags): Promise<number> {
  const out = new Output(flags);
  const [{ initBackend }, { embed, openFeatureSource }, { createCatalog }, { builtinPlugins }] =
    await Promise.all([
      import('@contrast/backend'),
      import('@contrast/export'),
      import('@contrast/trainer'),
      import('../plugins.js'),
    ]);
  await initBackend();
  const catalog = createCatalog(builtinPlugins());
  const model = await openFeatureSource(source, catalog);
  try {
    const r = await embed(model, target, catalog, {
      out: flags.out,
      normalize: flags.normalize,
      batchSize: flags.batch,
      strict: flags.strict ?? false,
      progress: !flags.quiet && !flags.json,
    });
    if (r.skipped.length > 0) {
      out.warn(
        `skipped ${r.skipped.length} unreadable file(s):\n${r.skipped.map((s) => `  ${s}`).join('\n')}`,
      );
    }
    out.result(
      `${r.rows} x ${r.dim} features in ${r.seconds.toFixed(1)} s; ${r.skipped.length} skipped\n${r.npy}\n${r.csv}`,
    );
    out.data({
      command: 'embed',
      ok: true,
      exitCode: ExitCode.ok,
      rows: r.rows,
      dim: r.dim,
      npy: r.npy,
      csv: r.csv,
      skipped: r.skipped,
    });
    return ExitCode.ok;
  } finally {
    model.dispose();
  }
}
