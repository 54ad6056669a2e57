import { join, resolve } from 'node:path';
import { UsageError } from '@contrast/core';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { formatResult, resultData, shellLine } from '../format.js';
import { collect, jsonOption, quietOption, setOption } from '../options.js';
import { Output } from '../output.js';
import { againToAbort, StopSignals } from '../signals.js';

interface TrainFlags {
  set: string[];
  plugin: string[];
  resume?: string;
  fallback?: boolean;
  quiet?: boolean;
  json?: boolean;
}

const EXAMPLES = `
Examples:
  contrast train experiments/moco-fmnist.yaml --set optim.epochs=1 --set strategy.momentum=0.999
  contrast train --resume runs/moco-fmnist-20250101T120000Z
  contrast train experiments/moco-fmnist.yaml --json > result.json
  contrast train my-method.yaml --plugin ./plugins/my-method

Stopping: SIGINT (Ctrl-C), SIGTERM or SIGHUP finish the current step, checkpoint,
mark the run interrupted (MLflow: KILLED) and exit 130 / 143 / 129 with the
command that resumes it; a second signal aborts at once.`;

/** `contrast train`: train and evaluate an experiment, or continue a stopped run. */
export function registerTrain(program: Command, ctx: CliContext): void {
  program
    .command('train')
    .description('train and evaluate an experiment, or continue a stopped run')
    .argument('[experiment]', 'experiment YAML file (with --resume: the run folder’s config.yaml)')
    .addOption(setOption())
    .option(
      '--plugin <package-or-path>',
      'also load this method plugin (repeatable; as the config’s plugins list)',
      collect,
      [] as string[],
    )
    .option('--resume <run-dir>', 'continue a run from its newest checkpoint')
    .option('--fallback', 'with --resume: if the newest checkpoint is corrupt, use an older one')
    .addOption(quietOption())
    .addOption(jsonOption())
    .addHelpText('after', EXAMPLES)
    .action(async (file: string | undefined, flags: TrainFlags) => {
      ctx.exitCode = await train(file, flags, ctx.argv);
    });
}

async function train(
  file: string | undefined,
  flags: TrainFlags,
  argv: readonly string[],
): Promise<number> {
  if (!file && !flags.resume) {
    throw new UsageError('train needs an experiment file or --resume <run-dir>', {
      hint: 'contrast train experiments/moco-fmnist.yaml (see contrast train --help)',
    });
  }
  if (flags.fallback && !flags.resume) {
    throw new UsageError('--fallback only applies with --resume', {
      hint: 'contrast train --resume <run-dir> --fallback',
    });
  }
  const out = new Output(flags);
  const { loadExperiment } = await import('@contrast/core');
  const config = loadExperiment(file ?? join(flags.resume!, 'config.yaml'), flags.set, {
    note: (line) => out.info(line),
  });
  const [{ initBackend }, trainer, { catalogFor }] = await Promise.all([
    import('@contrast/backend'),
    import('@contrast/trainer'),
    import('../plugins.js'),
  ]);
  await initBackend();
  const catalog = await catalogFor(config, flags.plugin);
  const stop = new StopSignals({
    onStop: (s) =>
      out.warn(
        `\n${s}: finishing the current step, checkpointing and writing the run (${againToAbort(s)})`,
      ),
  }).install();
  let outcome: Awaited<ReturnType<typeof trainer.runExperiment>>;
  try {
    outcome = await trainer.runExperiment(config, catalog, {
      progress: !flags.quiet,
      log: out.log,
      shouldStop: () => stop.requested,
      mlflow: { source: shellLine(['contrast', ...argv]) },
      ...(flags.resume
        ? { resumeFrom: { runPath: flags.resume, fallback: !!flags.fallback } }
        : {}),
    });
  } finally {
    stop.dispose();
  }
  const { runPath, result } = outcome;
  out.result(formatResult(result, runPath));
  const stopped = result.status !== 'finished';
  const resumable = stopped && trainer.listCheckpoints(trainer.checkpointDir(runPath)).length > 0;
  const next = shellLine(
    resumable ? ['contrast', 'train', '--resume', resolve(runPath)] : ['contrast', ...argv],
  );
  if (stopped) {
    out.warn(
      resumable
        ? `stopped after step ${result.steps}, checkpointed; resume with:\n  ${next}`
        : `stopped before the first step: nothing to resume; start again with:\n  ${next}`,
    );
  }
  const exitCode = stopped ? stop.exitCode : ExitCode.ok;
  out.data({
    command: 'train',
    ok: !stopped,
    exitCode,
    runPath: resolve(runPath),
    ...(stopped ? { next } : {}),
    result: resultData(result),
  });
  return exitCode;
}
