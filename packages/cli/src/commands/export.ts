import { InvalidArgumentError, type Command } from 'commander';
import type { CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { jsonOption, numberArg, quietOption } from '../options.js';
import { Output } from '../output.js';

interface ExportFlags {
  format?: string;
  out?: string;
  head?: boolean;
  gallery?: number;
  quiet?: boolean;
  json?: boolean;
}

const HELP = `
Formats: tfjs (a tf.layers model: model.json + weights), torch (torchvision
state_dict names as safetensors, with load.py), npz (NumPy arrays), web (a
nearest-neighbour page over --gallery test images). encoder.json beside them
says what the features are (input size, normalisation, feature width). A run
tracked in MLflow also gets the folder as a logged model, the run's output.

Examples:
  contrast export runs/moco-fmnist-20250101T120000Z
  contrast export runs/<run> --format torch --out exports/moco
  contrast export runs/<run> --format web --gallery 500`;

/** `contrast export`: the trained encoder in formats other tools load. */
export function registerExport(program: Command, ctx: CliContext): void {
  program
    .command('export')
    .description('write a run’s trained encoder for use elsewhere (tfjs, torch, npz, web page)')
    .argument('<run-dir>', 'a run folder (its final state, else its newest checkpoint)')
    .option(
      '--format <list>',
      'comma-separated: tfjs, torch, npz, web (default tfjs,torch,npz)',
      (value: string) => {
        if (value.trim() === '') throw new InvalidArgumentError('give e.g. tfjs,torch');
        return value;
      },
    )
    .option('--out <dir>', 'output folder (default <run-dir>/export)')
    .option('--head', 'also export the projection head (default: the backbone only)')
    .option(
      '--gallery <n>',
      'web: test images on the page (default 1000)',
      numberArg({ min: 1, integer: true }, '--gallery 500'),
    )
    .addOption(quietOption())
    .addOption(jsonOption())
    .addHelpText('after', HELP)
    .action(async (run: string, flags: ExportFlags) => {
      ctx.exitCode = await exportCommand(run, flags);
    });
}

async function exportCommand(run: string, flags: ExportFlags): Promise<number> {
  const out = new Output(flags);
  const [{ initBackend }, { exportRun, parseFormats }, { catalogForRun }] = await Promise.all([
    import('@contrast/backend'),
    import('@contrast/export'),
    import('../plugins.js'),
  ]);
  const formats = flags.format ? parseFormats(flags.format) : undefined;
  await initBackend();
  const r = await exportRun(run, await catalogForRun(run), {
    ...(formats ? { formats } : {}),
    ...(flags.out ? { out: flags.out } : {}),
    head: flags.head ?? false,
    ...(flags.gallery ? { gallery: flags.gallery } : {}),
    log: out.log,
  });
  out.result(
    [
      `exported ${r.sidecar.architecture.encoder} to ${r.dir}`,
      ...Object.entries(r.files).map(([role, file]) => `  ${role.padEnd(13)}${file}`),
      ...(r.mlflowModel
        ? [`MLflow logged model ${r.mlflowModel.modelId} (output of run ${r.mlflowModel.runId})`]
        : []),
    ].join('\n'),
  );
  out.data({
    command: 'export',
    ok: true,
    exitCode: ExitCode.ok,
    dir: r.dir,
    files: r.files,
    ...(r.mlflowModel ? { mlflowModel: r.mlflowModel } : {}),
  });
  return ExitCode.ok;
}
