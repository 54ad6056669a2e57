import { readFileSync } from 'node:fs';
import { StateError, UsageError } from '@contrast/core/errors';
import { InvalidArgumentError, type Command } from 'commander';
import { commandPath, type CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { invocation, shellLine } from '../format.js';
import { jsonOption, numberArg, QUEUE_ENV, queueOption, quietOption } from '../options.js';
import { Output } from '../output.js';
import { againToAbort, StopSignals } from '../signals.js';

interface RunFlags {
  scale: number;
  seeds?: number[];
  out?: string;
  parallel: number;
  queue?: string;
  quiet?: boolean;
  json?: boolean;
}

const scaleOption = (c: Command) =>
  c.option(
    '--scale <f>',
    'multiply the epochs and the training subset',
    numberArg({ min: 0, above: true }, '--scale 3'),
    1,
  );

/** `--seeds 0,2`: a comma-separated list of whole numbers >= 0. */
function seedList(value: string): number[] {
  const seeds = value.split(',').map((v) => Number(v));
  if (
    value.trim() === '' ||
    seeds.some((n, i) => !Number.isInteger(n) || n < 0 || value.split(',')[i]!.trim() === '')
  ) {
    throw new InvalidArgumentError(
      'use a comma-separated list of whole numbers >= 0, e.g. --seeds 0 or --seeds 0,2',
    );
  }
  return seeds;
}

/** --scale, --seeds and --out: which configurations, and where their report goes. */
const selectOptions = (c: Command) =>
  scaleOption(c)
    .option(
      '--seeds <list>',
      "only these of the study's seeds, comma-separated (their runs keep their ids in the whole study)",
      seedList,
    )
    .option('--out <dir>', 'output folder (default runs/studies/<name>, -x<F> with --scale F)');

const RUN_HELP = `
Writes table.md, results.csv and plots to runs/studies/<name>/ (with --scale F:
runs/studies/<name>-x<F>/; or --out);
finished configurations (same config hash) are skipped on a re-run, and each
configuration trains in a fixed folder (runs/<name>-<hash>), so a stopped one
resumes from its checkpoint. With --seeds only those seeds' configurations run;
the report shows every finished configuration of the study.

Stopping: SIGINT, SIGTERM or SIGHUP stop the running configurations cleanly
(checkpoint, run marked interrupted; with --parallel each child is told) and
exit 130 / 143 / 129; run the same command again to continue. A second signal
aborts at once. With --queue only the waiting stops: the jobs stay queued.

Examples:
  contrast study run experiments/studies/momentum.yaml --parallel 2
  contrast study run experiments/studies/methods.yaml --scale 3 --seeds 0
  contrast study run experiments/studies/momentum.yaml --queue redis://host:6379 --json`;

/** `contrast study run|status|report`: ablation studies. */
export function registerStudy(program: Command, ctx: CliContext): void {
  const group = program.command('study').description('run, watch and report ablation studies');
  selectOptions(
    group
      .command('run')
      .description('run every configuration of a study, then write its report')
      .argument('<study>', 'study YAML file'),
  )
    .option(
      '--parallel <n>',
      'n configurations at a time, each in a child process',
      numberArg({ min: 1, integer: true }, '--parallel 2'),
      1,
    )
    .addOption(queueOption('queue the configurations on BullMQ and wait for workers', false))
    .addOption(quietOption())
    .addOption(jsonOption())
    .addHelpText('after', RUN_HELP)
    .action(async (file: string, flags: RunFlags) => {
      ctx.exitCode = await studyRun(file, flags, ctx.argv);
    });
  selectOptions(
    group
      .command('status')
      .description("show the queued / running / done / failed configurations of a study's jobs")
      .argument('<study>', 'study YAML file'),
  )
    .addOption(queueOption('the Redis server the study was queued on'))
    .addOption(jsonOption())
    .action(async (file: string, flags: RunFlags, cmd: Command) => {
      ctx.exitCode = await studyStatus(file, flags, commandPath(cmd));
    });
  group
    .command('report')
    .description('rewrite table.md, results.csv and the plots of a study folder')
    .argument('<study-dir>', 'a study output folder (holds results.jsonl)')
    .addOption(jsonOption())
    .action(async (dir: string, flags: { json?: boolean }) => {
      ctx.exitCode = await studyReport(dir, flags);
    });
  registerRunConfig(group, ctx);
}

async function studyRun(file: string, flags: RunFlags, argv: readonly string[]): Promise<number> {
  const out = new Output(flags);
  const { checkSeeds, loadStudy, StudyRunStopped } = await import('@contrast/study');
  checkSeeds(loadStudy(file), flags.seeds); // validate before the backend loads
  const where = {
    scale: flags.scale,
    ...(flags.seeds ? { seeds: flags.seeds } : {}),
    ...(flags.out ? { out: flags.out } : {}),
    log: out.log,
  };
  const stop = new StopSignals({
    onStop: (s) => out.warn(`\n${s}: stopping the study cleanly (${againToAbort(s)})`),
  }).install();
  const t0 = performance.now();
  try {
    const r = await runStudyIn(file, flags, where, stop);
    const minutes = (performance.now() - t0) / 60000;
    out.result(`${readFileSync(r.reportFiles[0]!, 'utf8')}`);
    out.result(
      `${r.results.length} runs, ${r.failed.length} failed; wall time ${minutes.toFixed(1)} min\nreport: ${r.reportFiles.join(', ')}\nin ${r.outDir}`,
    );
    const exitCode = r.failed.length ? ExitCode.failed : ExitCode.ok;
    out.data({ command: 'study run', ok: exitCode === 0, exitCode, wallMinutes: minutes, ...r });
    return exitCode;
  } catch (e) {
    if (!(e instanceof StudyRunStopped)) throw e;
    const next = shellLine([...invocation(), ...argv]);
    out.warn(
      flags.queue
        ? `stopped waiting; the jobs stay queued and workers keep running them. Collect the report with:\n  ${next}`
        : `study stopped: finished configurations are kept, stopped ones checkpointed. Continue with:\n  ${next}`,
    );
    out.data({ command: 'study run', ok: false, exitCode: stop.exitCode, next });
    return stop.exitCode;
  } finally {
    stop.dispose();
  }
}

/** Runs the study where the flags say: on the queue, in N child processes, or here. */
async function runStudyIn(
  file: string,
  flags: RunFlags,
  where: { scale: number; seeds?: number[]; out?: string; log: (l: string) => void },
  stop: StopSignals,
): Promise<{ outDir: string; results: object[]; failed: unknown[]; reportFiles: string[] }> {
  const { catalogForStudy } = await import('../plugins.js');
  const catalog = await catalogForStudy(file);
  if (flags.queue) {
    if (flags.parallel > 1) {
      throw new UsageError('--parallel and --queue do not combine', {
        hint: 'with --queue, start as many workers as configurations should run at once',
      });
    }
    const { runStudyOnQueue } = await import('../queue.js');
    return runStudyOnQueue(file, catalog, { queue: flags.queue, ...where, signal: stop.signal });
  }
  if (flags.parallel > 1) {
    const { runStudyParallel } = await import('../parallel.js');
    return runStudyParallel(file, catalog, { parallel: flags.parallel, ...where, stop });
  }
  const [{ initBackend }, { runStudy }] = await Promise.all([
    import('@contrast/backend'),
    import('@contrast/study'),
  ]);
  await initBackend();
  const r = await runStudy(file, catalog, {
    ...where,
    progress: !flags.quiet,
    shouldStop: () => stop.requested,
  });
  return { ...r, failed: [] };
}

async function studyStatus(file: string, flags: RunFlags, path: string): Promise<number> {
  if (!flags.queue) {
    throw new UsageError(`${path} reads the queue: give --queue redis://host:port`, {
      hint: `or set $${QUEUE_ENV}`,
    });
  }
  const out = new Output(flags);
  const [{ catalogForStudy }, { studyStatus: status }] = await Promise.all([
    import('../plugins.js'),
    import('../queue.js'),
  ]);
  const by = await status(file, await catalogForStudy(file), {
    queue: flags.queue,
    scale: flags.scale,
    ...(flags.seeds ? { seeds: flags.seeds } : {}),
    ...(flags.out ? { out: flags.out } : {}),
  });
  out.result(
    Object.entries(by)
      .map(([state, runs]) => `${state} (${runs.length})\n${runs.map((r) => `  ${r}`).join('\n')}`)
      .join('\n'),
  );
  out.data({ command: 'study status', ok: true, exitCode: ExitCode.ok, states: by });
  return ExitCode.ok;
}

async function studyReport(dir: string, flags: { json?: boolean }): Promise<number> {
  const out = new Output(flags);
  const { reportStudyFolder } = await import('@contrast/study');
  const files = await reportStudyFolder(dir);
  if (files.length === 0) {
    throw new StateError(`no results.jsonl with results in ${dir}`, {
      hint: 'pass the output folder of contrast study run (runs/studies/<name>, or <name>-x<F> after --scale F)',
    });
  }
  out.result(files.join('\n'));
  out.data({ command: 'study report', ok: true, exitCode: ExitCode.ok, files });
  return ExitCode.ok;
}

/**
 * `study run-config` (internal, for --parallel): one configuration in this
 * process; its result record is the last line of stdout. Stops cleanly on a
 * signal, on its parent's IPC stop message, or when its parent goes away.
 */
function registerRunConfig(group: Command, ctx: CliContext): void {
  scaleOption(
    group
      .command('run-config', { hidden: true })
      .argument('<study>')
      .requiredOption('--id <hash>', 'configuration id (config hash)')
      .requiredOption('--out <dir>', 'study output folder'),
  ).action(async (file: string, flags: { id: string; out: string; scale: number }) => {
    const [{ initBackend }, { catalogForStudy }, parallel, { StudyRunStopped }] = await Promise.all(
      [
        import('@contrast/backend'),
        import('../plugins.js'),
        import('../parallel.js'),
        import('@contrast/study'),
      ],
    );
    const stop = new StopSignals().install();
    const onMessage = (m: unknown) => {
      if (parallel.isStopMessage(m)) stop.request(m.signal);
    };
    const orphaned = () => stop.request('SIGHUP');
    process.on('message', onMessage).on('disconnect', orphaned);
    try {
      await initBackend();
      const record = await parallel.runOneConfig(file, await catalogForStudy(file), {
        ...flags,
        log: (l) => process.stderr.write(`${l}\n`),
        shouldStop: () => stop.requested,
      });
      process.stdout.write(`${JSON.stringify(record)}\n`);
      ctx.exitCode = ExitCode.ok;
    } catch (e) {
      if (!(e instanceof StudyRunStopped)) throw e;
      process.stderr.write(`${e.message}\n`);
      ctx.exitCode = stop.exitCode;
    } finally {
      stop.dispose();
      process.off('message', onMessage).off('disconnect', orphaned);
      process.channel?.unref(); // let the process end
    }
  });
}
