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

const SUBSETS = `
Subsets: on the full splits the result is the run's headline (eval/<kind>.json,
summary.json eval_results.<kind>, MLflow knn_accuracy / linear_top1). With fewer
images (--bank, --test or --train below the split's size) it is a subset,
recorded beside it and never over it: eval/<kind>-subset.json, summary
eval_results.<kind>_subset, MLflow knn_accuracy_subset / linear_top1_subset with
its sizes as knn_subset_bank_size, knn_subset_test_size, linear_subset_train_size.`;

const LR_SELECTION = `
Learning rate: without --lr, one probe per lr in 0.1, 0.3, 1, 3, 10, 30 is
trained on 90% of the training images (a seeded random split, same epochs and
schedule); the best top-1 on the held-out 10% wins among those whose training
loss ends below chance, ln(classes) (ties: the smaller lr), and the probe is
retrained at that lr on all the training images, then scored once on the test
split. The test split never takes part in the choice. The lr used is
printed and recorded (linear_lr; eval/linear.json lr_selection lists every
candidate). MoCo's fixed lr 30 suits unnormalised ImageNet features, not these:
on moco-fmnist it ends above the chance loss.`;

const STOPPING = `
Stopping: evaluation records nothing until it has its result (then it writes
eval/<kind>.json, summary.json and a metrics record at once), so SIGINT, SIGTERM
and SIGHUP end it immediately (exit 130 / 143 / 129); run it again to evaluate.`;

/** `contrast eval knn|linear <run-dir>`: evaluate a run's encoder (full splits unless told otherwise). */
export function registerEval(program: Command, ctx: CliContext): void {
  const group = program
    .command('eval')
    .description("evaluate a run's trained encoder (kNN or linear probe)");
  group
    .command('knn')
    .description("weighted kNN top-1 of a run's encoder (InstDisc's monitor; the run's k and t)")
    .argument('<run-dir>', 'a run folder created by contrast train')
    .option(
      '--bank <n>',
      'first n training images as the bank (0 = all; fewer is recorded as knn-subset)',
      count('--bank 10000'),
    )
    .option(
      '--test <n>',
      'first n test images (0 = all; fewer is recorded as knn-subset)',
      count('--test 1000'),
    )
    .addOption(quietOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `${SUBSETS}\n${STOPPING}\n\nExample:\n  contrast eval knn runs/<run> --json`,
    )
    .action(async (run: string, flags: EvalFlags) => {
      ctx.exitCode = await evaluate(run, 'knn', flags);
    });
  group
    .command('linear')
    .description(
      'linear probe on frozen pooled features (SGD momentum 0.9, wd 0, batch 256, lr x0.1 at 60% and 80% of the epochs; the lr selected on held-out training images unless --lr): top-1 / top-5',
    )
    .argument('<run-dir>', 'a run folder created by contrast train')
    .option(
      '--epochs <n>',
      'probe epochs (default 100)',
      numberArg({ min: 1, integer: true }, '--epochs 100'),
    )
    .option(
      '--lr <x>',
      'a fixed probe learning rate instead of the selection (MoCo used 30 on ImageNet features)',
      numberArg({ min: 0, above: true }, '--lr 1'),
    )
    .option(
      '--train <n>',
      'fit the probe on the first n training images (0 = all; fewer is recorded as linear-subset)',
      count('--train 10000'),
    )
    .addOption(quietOption())
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `${LR_SELECTION}\n${SUBSETS}\n${STOPPING}\n\nExample:\n  contrast eval linear runs/<run> --epochs 100`,
    )
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
        .map(
          ([k, v]) => `${k} ${Number.isInteger(v) || /_lr(_subset)?$/.test(k) ? v : v.toFixed(4)}`,
        )
        .join(', ')}\n${r.seconds.toFixed(1)} s; weights ${r.weights}; written to ${r.file}`,
  );
  out.data({ command: `eval ${kind}`, ok: true, exitCode: ExitCode.ok, ...r });
  return ExitCode.ok;
}
