import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { Catalog, Collectives, ExperimentConfig } from '@contrast/core';
import { UsageError } from '@contrast/core/errors';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { formatResult, invocation, resultData, shellLine } from '../format.js';
import { collect, jsonOption, numberArg, quietOption, setOption } from '../options.js';
import { Output } from '../output.js';
import { againToAbort, isStopMessage, StopSignals } from '../signals.js';

interface TrainFlags {
  set: string[];
  plugin: string[];
  resume?: string;
  fallback?: boolean;
  quiet?: boolean;
  json?: boolean;
  workers?: number;
  cluster?: string;
  rank?: number;
  collectiveTimeout: number;
}

const EXAMPLES = `
Examples:
  contrast train experiments/moco-fmnist.yaml --set optim.epochs=1 --set strategy.momentum=0.999
  contrast train --resume runs/moco-fmnist-20250101T120000Z
  contrast train experiments/moco-fmnist.yaml --json > result.json
  contrast train my-method.yaml --plugin ./plugins/my-method

  contrast train experiments/moco-fmnist.yaml --workers 2           # data-parallel, this machine
  contrast train exp.yaml --cluster hostA:7070,hostB:7070 --rank 0  # on hostA (rank 1 on hostB)

Stopping: SIGINT (Ctrl-C), SIGTERM or SIGHUP finish the current step, checkpoint,
mark the run interrupted (MLflow: KILLED) and exit 130 / 143 / 129 with the
command that resumes it; a second signal aborts at once.

Data-parallel: optim.batchSize is the global batch; each of N workers trains
its slice, gradients are averaged (TensorFlow's collective ops), rank 0 writes
the run. --workers N starts N processes on loopback addresses; across machines
each runs the same command with --cluster/--rank or TF_CONFIG, on a trusted
network (TensorFlow's gRPC server listens on every interface, unauthenticated).`;

/** `contrast train`: train and evaluate an experiment, or continue a stopped run. */
export function registerTrain(program: Command, ctx: CliContext): void {
  program
    .command('train')
    .description('train and evaluate an experiment, or continue a stopped run')
    .argument('[experiment]', 'experiment YAML file (with --resume: the run folder’s config.yaml)')
    .addOption(setOption())
    .option(
      '--plugin <package-or-path>',
      'also load this plugin (repeatable; as the config’s plugins list, and recorded with the run)',
      collect,
      [] as string[],
    )
    .option('--resume <run-dir>', 'continue a run from its newest checkpoint')
    .option('--fallback', 'with --resume: if the newest checkpoint is corrupt, use an older one')
    .option(
      '--workers <n>',
      'data-parallel on this machine: N worker processes, cores / N threads each',
      numberArg({ min: 1, integer: true }, '--workers 2'),
    )
    .option(
      '--cluster <host:port,...>',
      'data-parallel across machines: every worker, in rank order (else TF_CONFIG)',
    )
    .option(
      '--rank <i>',
      "this worker's index in --cluster",
      numberArg({ min: 0, integer: true }, '--rank 0'),
    )
    .option(
      '--collective-timeout <s>',
      'seconds a step waits for the other workers before the run fails as a lost peer',
      numberArg({ min: 1 }, '--collective-timeout 60'),
      60,
    )
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
  const loaded = loadExperiment(file ?? join(flags.resume!, 'config.yaml'), flags.set, {
    note: (line) => out.info(line),
  });
  if (flags.workers !== undefined && flags.workers > 1) return launch(argv, flags, out);
  const { withPluginFlags, catalogFor } = await import('../plugins.js');
  // recorded with the run, so resuming, evaluating and exporting it need no --plugin
  const config = { ...loaded, plugins: withPluginFlags(loaded.plugins, flags.plugin) };
  const [{ initBackend }, trainer] = await Promise.all([
    import('@contrast/backend'),
    import('@contrast/trainer'),
  ]);
  const joinGroup = await clusterJoin(config, flags);
  await initBackend();
  const catalog = await catalogFor(loaded, flags.plugin); // errors name the flags as given
  const collectives = await joinGroup?.();
  if (collectives && collectives.rank > 0)
    return trainWorker(config, catalog, collectives, flags, out);
  const stop = listenForStop((s) =>
    out.warn(
      `\n${s}: finishing the current step, checkpointing and writing the run (${againToAbort(s)})`,
    ),
  );
  let outcome: Awaited<ReturnType<typeof trainer.runExperiment>>;
  try {
    outcome = await trainer.runExperiment(config, catalog, {
      progress: !flags.quiet,
      log: out.log,
      shouldStop: () => stop.requested,
      mlflow: { source: shellLine(['contrast', ...argv]) },
      ...(collectives ? { collectives } : {}),
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
    resumable
      ? [...invocation(), 'train', '--resume', resolve(runPath), ...groupFlags(argv)]
      : [...invocation(), ...argv],
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

/** The flags that place a data-parallel worker, kept in the command that resumes its run. */
function groupFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (['--workers', '--cluster', '--rank', '--collective-timeout'].includes(a))
      out.push(a, argv[++i] ?? '');
    else if (/^--(workers|cluster|rank|collective-timeout)=/.test(a)) out.push(a);
  }
  return out;
}

/**
 * What the workers of one run must share, hashed (they compare it when they
 * join): the config without where rank 0 tracks it and where each machine
 * keeps its data (tracking.*, data.root).
 */
export function joinHash(config: ExperimentConfig): string {
  const { tracking: _tracking, ...rest } = config;
  const data: Record<string, unknown> = { ...rest.data };
  delete data.root;
  return createHash('sha256')
    .update(JSON.stringify({ ...rest, data }))
    .digest('hex');
}

/** `--workers N`: the launcher (no TensorFlow here); the workers are `train --cluster --rank`. */
async function launch(argv: readonly string[], flags: TrainFlags, out: Output): Promise<number> {
  if (flags.cluster !== undefined || flags.rank !== undefined || process.env.TF_CONFIG) {
    throw new UsageError('--workers starts its own loopback cluster: it cannot join another', {
      hint: 'drop --workers (and use --cluster/--rank or TF_CONFIG on each machine), or drop --cluster, --rank and TF_CONFIG',
    });
  }
  const [{ launchWorkers }, { loopbackCluster }, { localWorkerDevices }] = await Promise.all([
    import('../launch.js'),
    import('@contrast/distributed'),
    import('@contrast/backend'),
  ]);
  const rest = withoutFlag(argv.slice(argv[0] === 'train' ? 1 : 0), '--workers');
  // one GPU per worker on the GPU build, decided before any worker starts
  const devices = localWorkerDevices(flags.workers!);
  const cluster = await loopbackCluster(flags.workers!);
  const gpus = devices.env.map((e) => e.CUDA_VISIBLE_DEVICES).join(', ');
  out.info(
    `[workers] ${flags.workers} workers on this machine: ${cluster.join(', ')}${devices.devices === 'tensorflow-gpu' ? ` (GPUs ${gpus}, NCCL)` : ''}`,
  );
  const { code } = await launchWorkers(
    rest,
    cluster,
    out.warn,
    flags.collectiveTimeout + 30,
    devices.env,
  );
  return code;
}

/** argv without `flag` and its value. */
function withoutFlag(argv: readonly string[], flag: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === flag) i++;
    else if (!argv[i]!.startsWith(`${flag}=`)) out.push(argv[i]!);
  }
  return out;
}

/** A worker of rank > 0: trains its slices in step with the group, writes nothing. */
async function trainWorker(
  config: ExperimentConfig,
  catalog: Catalog,
  collectives: Collectives,
  flags: TrainFlags,
  out: Output,
): Promise<number> {
  const { runWorker } = await import('@contrast/trainer');
  const stop = listenForStop();
  try {
    const result = await runWorker(config, catalog, {
      collectives,
      log: out.log,
      shouldStop: () => stop.requested,
      ...(flags.resume
        ? { resumeFrom: { runPath: flags.resume, fallback: !!flags.fallback } }
        : {}),
    });
    return result.status === 'finished' ? ExitCode.ok : stop.exitCode;
  } finally {
    stop.dispose();
  }
}

/**
 * Stop signals, and a launcher's stop over IPC (`--workers`): its message, or
 * its IPC channel closing (the launcher is gone), stops the run as a first
 * signal does; a later OS signal then aborts.
 */
function listenForStop(onStop?: (s: NodeJS.Signals) => void): {
  requested: boolean;
  exitCode: number;
  dispose(): void;
} {
  const stop = new StopSignals(onStop ? { onStop } : {}).install();
  const onMessage = (m: unknown) => {
    if (isStopMessage(m)) stop.request(m.signal);
  };
  const orphaned = () => stop.request('SIGHUP');
  if (process.channel) process.on('message', onMessage).on('disconnect', orphaned);
  return {
    get requested() {
      return stop.requested;
    },
    get exitCode() {
      return stop.exitCode;
    },
    dispose() {
      stop.dispose();
      process.off('message', onMessage).off('disconnect', orphaned);
      process.channel?.unref();
    },
  };
}

/**
 * The data-parallel group this worker joins (--cluster/--rank or TF_CONFIG),
 * as a function to call once the backend is up; undefined on one process.
 * @throws DistributedError for a malformed cluster (before anything loads).
 */
async function clusterJoin(
  config: ExperimentConfig,
  flags: TrainFlags,
): Promise<(() => Promise<Collectives>) | undefined> {
  const distributed = await import('@contrast/distributed');
  const member = distributed.resolveCluster(
    {
      ...(flags.cluster !== undefined ? { cluster: flags.cluster } : {}),
      ...(flags.rank !== undefined ? { rank: flags.rank } : {}),
    },
    process.env,
  );
  if (!member) return undefined;
  return () =>
    distributed.joinCluster({
      cluster: member.workers,
      rank: member.rank,
      configHash: joinHash(config),
      timeoutSeconds: flags.collectiveTimeout,
    });
}
