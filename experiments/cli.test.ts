import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { allCommands, builtinPlugins, cliVersion, createProgram } from '@contrast/cli';
import { FASHION_MNIST_FILES, fashionMnistDir } from '@contrast/data';
import { freePort, lockRun } from '@contrast/tracking';
import { BIN, cli, spawnCli } from './cli.js';

/**
 * The command's conventions, on the built CLI as users run it: help for every
 * command without running it, --version, usage errors on stderr with exit 2,
 * --json as exactly one JSON object on stdout, a quiet --quiet, no TensorFlow
 * start-up lines, coded argument errors with their fix and no stack trace, a
 * diverged run's own exit status, and doctor's checks with their fixes.
 */
const TINY = `name: cli-tiny
data: { trainSubset: 512 }
model: { encoder: convnet, width: 0.25, dim: 16 }
strategy: { name: momentum-queue, queueSize: 64 }
optim: { batchSize: 64, epochs: 1 }
eval: { knn: { every: 1, testSize: 200, bankSize: 512 }, baselines: false, alignUniform: 100 }
`;
const NO_STACK = /\n\s+at /;
const TF_BANNER = /oneDNN|absl::InitializeLog/;

/** Every command path, hidden (internal) ones excepted: "train", "eval knn", ... */
function commandPaths(): string[][] {
  const program = createProgram({ argv: [], exitCode: 0 });
  return allCommands(program)
    .filter((c) => c !== program && !(c as unknown as { _hidden: boolean })._hidden)
    .map((c) => {
      const words: string[] = [];
      for (let p: typeof c | null = c; p && p !== program; p = p.parent) words.unshift(p.name());
      return words;
    });
}

describe('help and version: printed, nothing run', () => {
  it('--help for every command and subcommand: exit 0, usage on stdout, no file touched', async () => {
    const paths = commandPaths();
    expect(paths.map((p) => p.join(' '))).toEqual(
      expect.arrayContaining([
        'train',
        'eval knn',
        'eval linear',
        'study run',
        'study status',
        'study report',
        'worker',
        'sync',
        'doctor',
        'setup',
      ]),
    );
    const cwd = mkdtempSync(join(tmpdir(), 'contrast-help-'));
    const runs = [[], ...paths].map((p) => ({
      words: p,
      run: spawnCli([...p, '--help'], { cwd }),
    }));
    for (const { words, run } of runs) {
      const what = words.join(' ') || '(program)';
      expect(await run.done, what).toBe(0);
      expect(run.stdout(), what).toContain(`Usage: ${['contrast', ...words].join(' ')} `);
      expect(run.stderr(), what).toBe('');
    }
    expect(readdirSync(cwd)).toEqual([]); // doctor would create runs/, train a run folder
    const help = spawnCli(['help', 'train'], { cwd });
    expect(await help.done).toBe(0);
    expect(help.stdout()).toContain('Usage: contrast train ');
  });

  it('--help loads no TensorFlow, plugin or study module (what a command needs, it imports when it runs)', async () => {
    // the CommonJS modules the process loaded (tfjs, sharp, resvg are CommonJS), printed at exit
    const cwd = mkdtempSync(join(tmpdir(), 'contrast-help-modules-'));
    const hook = join(cwd, 'modules.cjs');
    writeFileSync(
      hook,
      "process.on('exit', () => process.stderr.write(JSON.stringify(Object.keys(require.cache))));\n",
    );
    const child = spawn(process.execPath, ['--require', hook, BIN, 'train', '--help'], { cwd });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    expect(await new Promise((r) => child.on('close', r))).toBe(0);
    const loaded = JSON.parse(err) as string[];
    expect(loaded.some((m) => m.includes('commander'))).toBe(true);
    expect(loaded.filter((m) => /@tensorflow|sharp|resvg|vega|@contrast/.test(m))).toEqual([]);
  });

  it('--version prints the version; no command is a usage error on stderr (exit 2)', async () => {
    const v = spawnCli(['--version']);
    expect(await v.done).toBe(0);
    expect(v.stdout().trim()).toBe(cliVersion());
    const none = spawnCli([]);
    expect(await none.done).toBe(2);
    expect(none.stdout()).toBe('');
    expect(none.stderr()).toContain('Usage: contrast ');
  });
});

describe('argument errors: coded, with the fix, exit 2, no stack trace', () => {
  const cases: [string, string[], RegExp][] = [
    [
      '--set without a value',
      ['train', '--set'],
      /CONTRAST_USAGE.*--set <key=value>' argument missing/s,
    ],
    [
      'a negative epoch count',
      ['eval', 'linear', 'runs/x', '--epochs', '-1'],
      /CONTRAST_USAGE.*'--epochs <n>' argument '-1' is invalid\n {2}fix: use a whole number >= 1, e.g. --epochs 100/s,
    ],
    [
      'an unknown flag',
      ['train', 'x.yaml', '--bogus'],
      /CONTRAST_USAGE.*unknown option '--bogus'.*fix: see 'contrast train --help'/s,
    ],
    [
      'a misspelt flag',
      ['train', 'x.yaml', '--sett', 'a=1'],
      /unknown option '--sett'.*fix: Did you mean --set\?/s,
    ],
    ['an unknown command', ['trian'], /unknown command 'trian'.*fix: Did you mean train\?/s],
    [
      'a missing experiment file',
      ['train', 'nope.yaml'],
      /CONTRAST_CONFIG.*cannot read nope.yaml.*fix:/s,
    ],
    [
      'a missing run folder',
      ['eval', 'knn', '/nonexistent/run'],
      /CONTRAST_STATE.*not a run folder.*fix:/s,
    ],
    [
      'a missing study file',
      ['study', 'run', 'nope-study.yaml'],
      /CONTRAST_CONFIG.*nope-study.yaml.*fix:/s,
    ],
    [
      'train with nothing to train',
      ['train'],
      /CONTRAST_USAGE.*experiment file or --resume.*fix:/s,
    ],
  ];
  it.each(cases)('%s', async (_name, args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(NO_STACK);
    expect(r.stdout).toBe('');
  });

  it('with --json the error is the one JSON object on stdout', async () => {
    const r = await cli(['eval', 'linear', 'runs/x', '--epochs', '0', '--json']);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      exitCode: 2,
      error: { code: 'CONTRAST_USAGE', fix: 'use a whole number >= 1, e.g. --epochs 100' },
    });
  });
});

describe('training and its output', () => {
  let dir: string;
  let exp: string;
  let runPath: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'contrast-cli-'));
    exp = join(dir, 'tiny.yaml');
    writeFileSync(exp, TINY);
    const r = spawnCli(['train', exp, `--set=tracking.dir=${join(dir, 'runs')}`, '--json']);
    expect(await r.done, r.stderr()).toBe(0);
    const out = JSON.parse(r.stdout());
    runPath = out.runPath;
    expect(out).toMatchObject({ command: 'train', ok: true, exitCode: 0 });
    expect(out.result).toMatchObject({ status: 'finished', steps: 8, epochs: 1 });
    expect(out.result.knnProtocol).toEqual({
      dataset: 'fashion-mnist',
      k: 200,
      t: 0.1,
      features: 'pooled backbone',
      bankSize: 512,
      bankOf: 512,
      testSize: 200,
      testOf: 10000,
      trainSubset: 512,
    });
    // the human summary went to stderr, with the real protocol
    expect(r.stderr()).toContain(
      'kNN top-1 (k = 200, t = 0.1, pooled backbone features) on fashion-mnist: first 200 of 10000 test images, bank = first 512 training images (data.trainSubset = 512):',
    );
  }, 120_000);

  it('--quiet is quiet: nothing on stderr, the summary on stdout', async () => {
    // eval.health off: this 16-step run's embeddings are still near their random initialisation,
    // which the health monitor rightly warns about (warnings stay with --quiet)
    const r = spawnCli([
      'train',
      exp,
      `--set=tracking.dir=${join(dir, 'quiet')}`,
      '--set=eval.health=0',
      '--quiet',
    ]);
    expect(await r.done).toBe(0);
    // a Node parent's 'pipe' is a socket: TensorFlow's start-up lines are hidden there too
    expect(r.stderr()).toBe('');
    expect(r.stdout()).toContain('first 200 of 10000 test images');
    expect(r.stdout()).toContain('run stored in ');
  });

  it('--json on eval, study run, study report and doctor: one JSON object on stdout', async () => {
    // a run folder another live process holds (a training, another eval) is not written to
    const held = lockRun(runPath);
    const refused = spawnCli(['eval', 'knn', runPath, '--bank', '512', '--test', '200', '--json']);
    expect(await refused.done).toBe(2);
    expect(JSON.parse(refused.stdout())).toMatchObject({
      ok: false,
      error: { code: 'CONTRAST_RUN_LOCKED' },
    });
    held.release();
    const ev = spawnCli(['eval', 'knn', runPath, '--bank', '512', '--test', '200', '--json']);
    expect(await ev.done, ev.stderr()).toBe(0);
    expect(JSON.parse(ev.stdout())).toMatchObject({
      command: 'eval knn',
      ok: true,
      subset: true,
      results: { knn_subset_bank_size: 512, knn_subset_test_size: 200 },
    });
    writeFileSync(
      join(dir, 'study.yaml'),
      'name: cli-study\nbase: tiny.yaml\naxis: strategy.queueSize\ngrid:\n  strategy.queueSize: [64]\n',
    );
    const out = join(dir, 'study');
    const st = spawnCli(['study', 'run', join(dir, 'study.yaml'), '--out', out, '--json']);
    expect(await st.done, st.stderr()).toBe(0);
    const study = JSON.parse(st.stdout());
    expect(study).toMatchObject({ command: 'study run', ok: true, outDir: out, failed: [] });
    expect(study.results).toHaveLength(1);
    const rep = spawnCli(['study', 'report', out, '--json']);
    expect(await rep.done, rep.stderr()).toBe(0);
    expect(JSON.parse(rep.stdout()).files).toContain(join(out, 'table.md'));
    const doc = spawnCli(['doctor', exp, `--set=tracking.dir=${join(dir, 'runs')}`, '--json']);
    expect(await doc.done, doc.stderr()).toBe(0);
    const checks = JSON.parse(doc.stdout()).checks as { name: string; ok: boolean }[];
    expect(checks.map((c) => c.name)).toEqual(
      expect.arrayContaining([
        'native binding',
        'backend',
        'dataset fashion-mnist',
        'mlflow',
        'redis',
      ]),
    );
  });

  it("TensorFlow's start-up lines are hidden on stderr through a pipe; --verbose shows them", async () => {
    // stderr as a shell pipe (`2>&1 >/dev/null | cat`): what a terminal, docker or a log pipe gives
    const stderrOf = async (args: string[]) => {
      const sh = spawn('sh', [
        '-c',
        '"$0" "$@" 2>&1 >/dev/null | cat',
        process.execPath,
        BIN,
        ...args,
      ]);
      let text = '';
      sh.stdout.on('data', (d: Buffer) => (text += d.toString()));
      await new Promise((r) => sh.on('close', r));
      return text;
    };
    const args = ['doctor', exp, `--set=tracking.dir=${join(dir, 'runs')}`];
    const quiet = await stderrOf([
      'train',
      exp,
      `--set=tracking.dir=${join(dir, 'piped')}`,
      '--json',
    ]);
    expect(quiet).toContain('run stored in'); // with --json the summary is on stderr
    expect(quiet).not.toMatch(TF_BANNER);
    expect(await stderrOf(args)).not.toMatch(TF_BANNER);
    expect(await stderrOf(['--verbose', ...args])).toMatch(TF_BANNER);
  });

  it("--set strategy.name switches the method: the old one's fields are dropped, in one info line", async () => {
    const tiny = ['data.trainSubset=256', 'optim.batchSize=64', 'optim.epochs=1'];
    const r = spawnCli([
      'train',
      join(import.meta.dirname, 'moco-fmnist.yaml'), // momentum-queue with queueSize and momentum
      '--set=strategy.name=moco-v3',
      ...[...tiny, 'eval.knn.every=0', 'eval.baselines=false', 'eval.health=0'].map(
        (s) => `--set=${s}`,
      ),
      `--set=tracking.dir=${join(dir, 'switched')}`,
      '--json',
    ]);
    expect(await r.done, r.stderr()).toBe(0);
    expect(r.stderr()).toContain(
      "strategy.name momentum-queue -> moco-v3: dropped momentum-queue's fields queueSize=4096, momentum=0.99 (set strategy.<field> to give moco-v3 one)\n",
    );
    const run = JSON.parse(r.stdout()).runPath as string;
    expect(readFileSync(join(run, 'config.yaml'), 'utf8')).toMatch(
      /^strategy:\n {2}name: moco-v3\nloss:/m,
    );
  });

  it('a diverged run exits 3 (not 2) with a coded error and its fix, and is marked failed', async () => {
    const r = await cli([
      'train',
      exp,
      `--set=tracking.dir=${join(dir, 'diverged')}`,
      '--set=optim.lr=1e30',
      '--quiet',
    ]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(
      /CONTRAST_DIVERGED.*the loss became (NaN|-?Infinity) at step \d+\n {2}fix: lower optim.lr/s,
    );
    expect(r.stderr).not.toMatch(NO_STACK);
    const run = join(dir, 'diverged', readdirSync(join(dir, 'diverged'))[0]!);
    expect(JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8')).status).toBe('failed');
  });
});

describe('a method from contrast new-method: each error before it trains has its fix', () => {
  it('not built, then built but not loaded: the exact build command, then the exact --plugin', async () => {
    const known = builtinPlugins()
      .map((p) => p.name)
      .sort()
      .join(', ');
    const cwd = mkdtempSync(join(tmpdir(), 'contrast-new-method-'));
    writeFileSync(join(cwd, 'exp.yaml'), TINY.replace('momentum-queue', 'sg-x'));
    const made = spawnCli(['new-method', 'sg-x'], { cwd });
    expect(await made.done, made.stderr()).toBe(0);
    const plugin = join(cwd, 'plugins', 'sg-x');
    const build = `cd ${plugin} && npm install && npm run build`; // no pnpm workspace around it
    expect(made.stdout()).toContain(`train with it: ${build}, then`);
    expect(made.stdout()).toContain('contrast train <experiment> --plugin ./plugins/sg-x');
    const train = async (...args: string[]) => {
      const r = spawnCli(['train', 'exp.yaml', ...args], { cwd });
      expect(await r.done, r.stderr()).toBe(2);
      expect(r.stderr()).not.toMatch(NO_STACK);
      return r.stderr();
    };
    expect(await train()).toMatch(
      `unknown strategy 'sg-x'. Known: ${known}\n  fix: build the plugin (${build}), then add --plugin ./plugins/sg-x\n`,
    );
    expect(await train('--plugin', './plugins/sg-x')).toContain(
      `[plugin ./plugins/sg-x] ${plugin} is not built: its entry ${join(plugin, 'dist', 'index.js')} does not exist\n  fix: build it (${build}), then run the command again\n`,
    );
    mkdirSync(join(plugin, 'dist'));
    writeFileSync(join(plugin, 'dist', 'index.js'), 'export default null;\n'); // as if built
    expect(await train()).toContain(
      `unknown strategy 'sg-x'. Known: ${known}\n  fix: add --plugin ./plugins/sg-x (or list it under plugins: in the experiment)\n`,
    );
  }, 60_000);
});

describe('a stderr shared with other writers loses no line', () => {
  /**
   * `{ echo BEFORE >&2; contrast doctor --json; echo AFTER >&2; } <redirect>`: the shell
   * writes before and after Contrast through the same stderr, as batch scripts, SLURM's
   * --error and `/usr/bin/time -v` do. doctor loads the native backend (TensorFlow's
   * start-up lines are hidden meanwhile) and, with --json, writes its checks to stderr.
   * Returns the lines the log ended with (the temporary folder written <dir>).
   */
  async function sharedStderr(redirect: string): Promise<string[]> {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-stderr-'));
    const log = join(dir, 'log');
    const script = `{ echo BEFORE >&2; "$0" "$@" >/dev/null; echo AFTER >&2; } ${redirect}`.replace(
      'LOG',
      '"$LOG"',
    );
    const sh = spawn(
      'sh',
      ['-c', script, process.execPath, BIN, 'doctor', '--json', `--set=tracking.dir=${dir}/runs`],
      { env: { ...process.env, LOG: log, MLFLOW_TRACKING_URI: '' }, stdio: 'pipe' },
    );
    let piped = '';
    sh.stdout.on('data', (d: Buffer) => (piped += d.toString()));
    expect(await new Promise((r) => sh.on('close', r))).toBe(0);
    const text = redirect.includes('LOG') ? readFileSync(log, 'utf8') : piped;
    return text
      .replaceAll(dir, '<dir>')
      .split('\n')
      .filter((l) => l !== '');
  }

  it('2> file, 2>> file and a pipe all hold BEFORE, every line of Contrast, AFTER, in order', async () => {
    const [truncated, appended, piped] = await Promise.all([
      sharedStderr('2> LOG'), // the shell's O_TRUNC description, without O_APPEND
      sharedStderr('2>> LOG'), // SLURM-like appending
      sharedStderr('2>&1 | cat'),
    ]);
    const checks = [
      'native binding',
      'collective ops',
      'backend',
      'dataset fashion-mnist',
      'gpu driver',
      'gpu devices',
      'gpu build',
      'threads',
      'cache',
      'run directory',
      'mlflow',
      'redis',
    ];
    for (const lines of [truncated, appended, piped]) {
      expect(lines[0]).toBe('BEFORE');
      expect(lines.at(-1)).toBe('AFTER');
      const names = lines
        .slice(1, -1)
        .filter((l) => !l.startsWith(' '))
        .map((l) => /^(?:ok {2}|FAIL) (.+?)\s{2,}/.exec(l)?.[1] ?? `unexpected: ${l}`);
      expect(names).toEqual(checks);
    }
    expect(appended).toEqual(truncated);
    expect(piped).toEqual(truncated);
  }, 60_000);
});

describe('doctor: dataset integrity, servers, each failure with its fix', () => {
  /** A copy of the Fashion-MNIST files with one of them damaged. */
  function damagedCopy(dir: string, damage: (file: string) => void): string {
    mkdirSync(dir, { recursive: true });
    for (const f of Object.values(FASHION_MNIST_FILES)) {
      copyFileSync(join(fashionMnistDir(), f), join(dir, f));
    }
    damage(join(dir, FASHION_MNIST_FILES.testLabels));
    return dir;
  }
  const datasetCheck = async (root: string) => {
    const r = await cli(['doctor', '--set', `data.root=${root}`, '--json']);
    const check = (JSON.parse(r.stdout).checks as { name: string }[]).find(
      (c) => c.name === 'dataset fashion-mnist',
    );
    return { code: r.code, check, human: r.stderr };
  };

  it('a truncated file is FAIL with the fix', async () => {
    const root = damagedCopy(mkdtempSync(join(tmpdir(), 'fmnist-cut-')), (f) =>
      truncateSync(f, 3000),
    );
    const { code, check } = await datasetCheck(root);
    expect(code).toBe(1);
    expect(check).toMatchObject({
      ok: false,
      detail: expect.stringMatching(
        /t10k-labels-idx1-ubyte.gz: gzip stream is corrupt or truncated/,
      ),
      fix: 'download the file again (or reinstall dataset-fashion-mnist)',
    });
  });

  it('a wrong gzip CRC is FAIL; an intact copy is ok with its sizes', async () => {
    const root = damagedCopy(mkdtempSync(join(tmpdir(), 'fmnist-crc-')), (f) => {
      const bytes = readFileSync(f);
      const at = bytes.length - 8; // the CRC-32 in the gzip trailer
      bytes[at] = bytes[at]! ^ 0xff;
      writeFileSync(f, bytes);
    });
    const bad = await datasetCheck(root);
    expect(bad.check).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/incorrect data check/),
    });
    const intact = await datasetCheck(
      damagedCopy(mkdtempSync(join(tmpdir(), 'fmnist-ok-')), () => {}),
    );
    expect(intact.check).toMatchObject({
      ok: true,
      detail: expect.stringMatching(/60000 train \/ 10000 test images verified/),
    });
  });

  it('MLflow and Redis that do not answer are FAIL with their fixes', async () => {
    const [mlflowPort, redisPort] = [await freePort(), await freePort()];
    const r = await cli([
      'doctor',
      '--set',
      `tracking.uri=http://127.0.0.1:${mlflowPort}`,
      '--queue',
      `redis://127.0.0.1:${redisPort}`,
      '--json',
    ]);
    expect(r.code).toBe(1);
    const by = Object.fromEntries(
      (JSON.parse(r.stdout).checks as { name: string; ok: boolean; fix?: string }[]).map((c) => [
        c.name,
        c,
      ]),
    );
    expect(by.mlflow).toMatchObject({
      ok: false,
      fix: expect.stringContaining('start the server'),
    });
    expect(by.redis).toMatchObject({
      ok: false,
      fix: expect.stringContaining('start redis-server'),
    });
    expect(r.stderr).toMatch(/FAIL mlflow .*\n\s+fix: start the server/);
  });
});
