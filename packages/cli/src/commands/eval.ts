import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { jsonOption, numberArg, quietOption } from '../options.js';
import { Output } from '../output.js';

interface EvalFlags {
  epochs?: number;
  lr?: number;
  train?: number;
  bank?: number;
  test?: number;
  quiet?: boolean;
  json?: boolean;
}

const count = (example: string) => numberArg({ min: 0, integer: true }, example);

const STOPPING = `
Stopping: evaluation records nothing until it has its result (then it writes
eval/<kind>.json, summary.json and a metrics record at once), so SIGINT, SIGTERM
and SIGHUP end it immediately (exit 130 / 143 / 129); run it again to evaluate.`;

/** `contrast eval knn|linear <run-dir>`: evaluate a run's encoder on the full splits. */
export function registerEval(program: Command, ctx: CliContext): void {
  const group = program
    .command('eval')
    .description("evaluate a run's trained encoder (kNN or linear probe)");
  group
    .command('knn')
    .description("weighted kNN top-1 of a run's encoder (InstDisc's monitor; the run's k and t)")
    .argument('<run-dir>', 'a run folder created by contrast train')
    .option('--bank <n>', 'first n training images as the bank (0 = all)', count('--bank 10000'))
    .option('--test <n>', 'first n test images (0 = all)', count('--test 1000'))
    .addOption(quietOption())
    .addOption(jsonOption())
    .addHelpText('after', `${STOPPING}\n\nExample:\n  contrast eval knn runs/<run> --json`)
    .action(async (run: string, flags: EvalFlags) => {
      ctx.exitCode = await evaluate(run, 'knn', flags);
    });
  group
    .command('linear')
    .description(
      'linear probe on frozen pooled features (MoCo protocol: SGD lr 30, momentum 0.9, wd 0, lr x0.1 at 60% and 80%): top-1 / top-5',
    )
    .argument('<run-dir>', 'a run folder created by contrast train')
    .option(
      '--epochs <n>',
      'probe epochs (default 100)',
      numberArg({ min: 1, integer: true }, '--epochs 100'),
    )
    .option(
      '--lr <x>',
      'probe learning rate (default 30)',
      numberArg({ min: 0, above: true }, '--lr 30'),
    )
    .option(
      '--train <n>',
      'fit the probe on the first n training images (0 = all)',
      count('--train 10000'),
    )
    .addOption(quietOption())
    .addOption(jsonOption())
    .addHelpText('after', `${STOPPING}\n\nExample:\n  contrast eval linear runs/<run> --epochs 100`)
    .action(async (run: string, flags: EvalFlags) => {
      ctx.exitCode = await evaluate(run, 'linear', flags);
    });
}

async function evaluate(target: string, kind: 'knn' | 'linear', flags: EvalFlags): Promise<number> {
  const out = new Output(flags);
  const [{ initBackend }, { evaluateRun }, { catalogForRun }] = await Promise.all([
    import('@contrast/backend'),
    import('@contrast/trainer'),
    import('../plugins.js'),
  ]);
  await initBackend();
  const defined = <T extends object>(o: T) =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  const r = await evaluateRun(target, kind, await catalogForRun(target), {
    probe: defined({ epochs: flags.epochs, lr: flags.lr }),
    knn: defined({ bankSize: flags.bank, testSize: flags.test }),
    ...(flags.train !== undefined ? { trainSize: flags.train } : {}),
    log: out.log,
  });
  out.result(
    r.skipped ??
      `${Object.entries(r.results)
        .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
        .join(', ')}\n${r.seconds.toFixed(1)} s; weights ${r.weights}; written to ${r.file}`,
  );
  out.data({ command: `eval ${kind}`, ok: true, exitCode: ExitCode.ok, ...r });
  return ExitCode.ok;
}
