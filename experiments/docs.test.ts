import { spawnSync, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import GithubSlugger from 'github-slugger';
import MarkdownIt, { type Token } from 'markdown-it';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import type { Plugin } from '@contrast/core';
import { createProgram, methodTemplate, newMethod } from '@contrast/cli';
import { createCatalog, createStepHarness } from '@contrast/trainer';

const repo = resolve(import.meta.dirname, '..');
const doc = readFileSync(join(repo, 'docs', 'adding-a-method.md'), 'utf8');

/** The doc's code blocks that name a file: ```ts file=path ... ``` */
function blocks(markdown: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of markdown.matchAll(/```\w+ file=(\S+)\n([\s\S]*?)```/g)) out[m[1]!] = m[2]!;
  return out;
}
const files = blocks(doc);

/** Type-checks files against the workspace's sources, with the project's compiler settings. */
function typeErrors(paths: string[]): string[] {
  const base = ts.readConfigFile(join(repo, 'tsconfig.base.json'), ts.sys.readFile).config as {
    compilerOptions: object;
  };
  const { options } = ts.convertCompilerOptionsFromJson(base.compilerOptions, repo);
  const program = ts.createProgram(paths, {
    ...options,
    noEmit: true,
    baseUrl: repo,
    paths: { '@contrast/*': ['packages/*/src/index.ts'] },
    typeRoots: [join(repo, 'node_modules', '@types')],
  });
  return ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file && paths.includes(d.file.fileName))
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}

describe('docs/adding-a-method.md runs as written', () => {
  it('shows exactly the method `contrast new-method` writes', () => {
    expect(files['plugins/my-method/src/index.ts']).toBe(methodTemplate('my-method'));
  });

  it('the written plugin type-checks, and its method trains on real data without leaking', async () => {
    // a folder laid out like the workspace (the plugin's tsconfig extends ../../tsconfig.base.json)
    const top = mkdtempSync(join(tmpdir(), 'contrast-scaffold-'));
    copyFileSync(join(repo, 'tsconfig.base.json'), join(top, 'tsconfig.base.json'));
    const dir = join(top, 'plugins', 'my-method');
    const written = newMethod('my-method', dir);
    expect(written.map((f) => f.slice(dir.length + 1)).sort()).toEqual([
      'README.md',
      'package.json',
      'src/index.ts',
      'src/plugin.test.ts',
      'tsconfig.build.json',
      'tsconfig.json',
    ]);
    expect(typeErrors([join(dir, 'src', 'index.ts')]).join('\n')).toBe('');
    const mod = (await import(join(dir, 'src', 'index.ts'))) as { default: () => Plugin };
    const h = createStepHarness(
      {
        name: 'scaffold',
        data: { trainSubset: 512 },
        model: { encoder: 'convnet', width: 0.25, dim: 16 },
        strategy: { name: 'my-method', queueSize: 64 },
        optim: { batchSize: 32 },
      },
      createCatalog([mod.default()]),
    );
    const { losses, tensorCounts } = h.run(4);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(new Set(tensorCounts.slice(1)).size).toBe(1);
    h.dispose();
    expect(() => newMethod('my-method', dir)).toThrow(/exists already/);
    expect(() => newMethod('My Method', join(dir, 'x'))).toThrow(/not a plugin name/);
  });

  it('a plugin in a folder outside the repository trains through the real command, editing nothing here', () => {
    const before = execFileSync('git', ['status', '--porcelain'], { cwd: repo, encoding: 'utf8' });
    const dir = mkdtempSync(join(tmpdir(), 'contrast-outside-'));
    writeFileSync(join(dir, 'sg-queue.mjs'), files['sg-queue.mjs']!);
    writeFileSync(join(dir, 'sg-queue.yaml'), files['sg-queue.yaml']!);
    const r = spawnSync(
      process.execPath,
      [join(repo, 'packages/cli/dist/bin.js'), 'train', 'sg-queue.yaml', '--quiet'],
      { cwd: dir, encoding: 'utf8', env: { ...process.env, MLFLOW_TRACKING_URI: '' } },
    );
    expect(r.stderr + r.stdout).toMatch(/trained encoder/);
    expect(r.status).toBe(0);
    const run = /run stored in (\S+)/.exec(r.stdout)![1]!;
    const summary = JSON.parse(readFileSync(join(resolve(dir, run), 'summary.json'), 'utf8'));
    expect(summary.status).toBe('finished');
    expect(summary.knn.trained).toBeGreaterThan(0.3);
    const config = readFileSync(join(resolve(dir, run), 'config.yaml'), 'utf8');
    expect(config).toContain(join(dir, 'sg-queue.mjs')); // the plugin path, absolute
    expect(execFileSync('git', ['status', '--porcelain'], { cwd: repo, encoding: 'utf8' })).toBe(
      before,
    );
  });

  it('a plugin given by --plugin is recorded with the run: evaluating it again needs no flag', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-outside-flag-'));
    writeFileSync(join(dir, 'sg-queue.mjs'), files['sg-queue.mjs']!);
    const yaml = files['sg-queue.yaml']!.replace(/^plugins:.*\n/m, '');
    expect(yaml).not.toMatch(/plugins/);
    writeFileSync(join(dir, 'sg-queue.yaml'), yaml);
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [join(repo, 'packages/cli/dist/bin.js'), ...args], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, MLFLOW_TRACKING_URI: '' },
      });
    const r = cli('train', 'sg-queue.yaml', '--plugin', './sg-queue.mjs', '--quiet');
    expect(r.status, r.stderr).toBe(0);
    const run = resolve(dir, /run stored in (\S+)/.exec(r.stdout)![1]!);
    expect(readFileSync(join(run, 'config.yaml'), 'utf8')).toContain(join(dir, 'sg-queue.mjs'));
    const knn = cli('eval', 'knn', run, '--bank', '2048', '--test', '1000', '--quiet');
    expect(knn.status, knn.stderr).toBe(0);
    expect(knn.stderr).not.toMatch(/unknown strategy/);
  });

  it('a multi-crop method outside the repository (2 global + 4 local crops of 12 px, its own loss with an option) trains through the real command', () => {
    const before = execFileSync('git', ['status', '--porcelain'], { cwd: repo, encoding: 'utf8' });
    const dir = mkdtempSync(join(tmpdir(), 'contrast-multi-crop-'));
    writeFileSync(join(dir, 'multi-crop.mjs'), files['multi-crop.mjs']!);
    writeFileSync(join(dir, 'multi-crop.yaml'), files['multi-crop.yaml']!);
    const r = spawnSync(
      process.execPath,
      [join(repo, 'packages/cli/dist/bin.js'), 'train', 'multi-crop.yaml', '--quiet'],
      { cwd: dir, encoding: 'utf8', env: { ...process.env, MLFLOW_TRACKING_URI: '' } },
    );
    expect(r.stderr + r.stdout).toMatch(/trained encoder/);
    expect(r.status).toBe(0);
    const run = resolve(dir, /run stored in (\S+)/.exec(r.stdout)![1]!);
    const summary = JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8'));
    expect(summary.status).toBe('finished');
    expect(summary.knn.trained).toBeGreaterThan(0.3);
    expect(readFileSync(join(run, 'config.yaml'), 'utf8')).toMatch(/name: local\n\s+count: 4/);
    expect(readFileSync(join(run, 'config.yaml'), 'utf8')).toMatch(/localWeight: 0.5/);
    expect(execFileSync('git', ['status', '--porcelain'], { cwd: repo, encoding: 'utf8' })).toBe(
      before,
    );
  });
});

describe('a loss of its own kind, with its own options, from outside the repository', () => {
  const dir = mkdtempSync(join(tmpdir(), 'contrast-loss-'));
  writeFileSync(join(dir, 'my-barlow-twins.mjs'), files['my-barlow-twins.mjs']!);
  writeFileSync(join(dir, 'my-barlow-twins.yaml'), files['my-barlow-twins.yaml']!);
  const train = (...args: string[]) =>
    spawnSync(
      process.execPath,
      [join(repo, 'packages/cli/dist/bin.js'), 'train', 'my-barlow-twins.yaml', '--quiet', ...args],
      { cwd: dir, encoding: 'utf8', env: { ...process.env, MLFLOW_TRACKING_URI: '' } },
    );

  it('trains through the real command, the option recorded with the run', () => {
    const r = train();
    expect(r.stderr + r.stdout).toMatch(/trained encoder/);
    expect(r.status).toBe(0);
    const run = resolve(dir, /run stored in (\S+)/.exec(r.stdout)![1]!);
    expect(JSON.parse(readFileSync(join(run, 'summary.json'), 'utf8')).status).toBe('finished');
    expect(readFileSync(join(run, 'config.yaml'), 'utf8')).toMatch(/lambda: 0\.005\n/);
  });

  it('refuses a misspelt option, and an option of another loss, before building anything', () => {
    const typo = train('--set', 'loss.lamda=0.005');
    expect(typo.status).not.toBe(0);
    expect(typo.stderr).toMatch(/loss\.lamda.*is not a field of loss 'my-barlow-twins'/);
    expect(typo.stderr).toMatch(/did you mean 'lambda'/);
    const other = train('--set', 'loss.name=infonce');
    expect(other.status).not.toBe(0);
    expect(other.stderr).toMatch(
      /'infonce' needs explicit negatives .* but method 'my-barlow-twins'/,
    );
    expect(other.stderr).toMatch(/use one of: .*my-barlow-twins/);
  });
});

describe("docs/adding-a-method.md's optimizer of one's own", () => {
  it('is selected by optim.optimizer and steps every parameter by lr * sign(g)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'contrast-optimizer-'));
    for (const f of ['sg-queue.mjs', 'sign-sgd.mjs']) writeFileSync(join(dir, f), files[f]!);
    const mod = (await import(join(dir, 'sign-sgd.mjs'))) as {
      default: (api: object) => Plugin;
    };
    const api = { core: await import('@contrast/core'), models: await import('@contrast/models') };
    const h = createStepHarness(
      {
        name: 'sign',
        data: { trainSubset: 256 },
        model: { encoder: 'convnet', width: 0.25, dim: 16 },
        strategy: { name: 'sg-queue', queueSize: 64 },
        optim: { batchSize: 32, optimizer: 'sign-sgd', lr: 0.01, weightDecay: 0 },
      },
      createCatalog([mod.default(api)]),
    );
    const w = h.encoder.namedVariables().get('conv1/w')!;
    const before = Float32Array.from(w.dataSync());
    h.run(1);
    const moved = Array.from(w.dataSync()).map((x, i) => Math.abs(x - before[i]!));
    expect(moved.filter((d) => Math.abs(d - 0.01) < 1e-6).length).toBe(moved.length);
    const { tensorCounts } = h.run(3);
    expect(new Set(tensorCounts).size).toBe(1);
    h.dispose();
  });
});

describe('docs/adding-a-method.md: an encoder plugin', () => {
  it('an encoder plugin outside the repository trains by name through the real command, editing nothing here', () => {
    const before = execFileSync('git', ['status', '--porcelain'], { cwd: repo, encoding: 'utf8' });
    const dir = mkdtempSync(join(tmpdir(), 'contrast-encoder-'));
    writeFileSync(join(dir, 'mlp-encoder.mjs'), files['mlp-encoder.mjs']!);
    writeFileSync(join(dir, 'mlp-encoder.yaml'), files['mlp-encoder.yaml']!);
    const r = spawnSync(
      process.execPath,
      [join(repo, 'packages/cli/dist/bin.js'), 'train', 'mlp-encoder.yaml', '--quiet'],
      { cwd: dir, encoding: 'utf8', env: { ...process.env, MLFLOW_TRACKING_URI: '' } },
    );
    expect(r.stderr + r.stdout).toMatch(/trained encoder/);
    expect(r.status).toBe(0);
    const run = /run stored in (\S+)/.exec(r.stdout)![1]!;
    const summary = JSON.parse(readFileSync(join(resolve(dir, run), 'summary.json'), 'utf8'));
    expect(summary.status).toBe('finished');
    expect(summary.knn.trained).toBeGreaterThan(0.3);
    // the run records the encoder's options with their defaults
    const config = readFileSync(join(resolve(dir, run), 'config.yaml'), 'utf8');
    expect(config).toMatch(/encoder: mlp/);
    expect(config).toMatch(/hidden: 256/);
    // an option the encoder does not have is refused, naming it and the known ones
    const bad = spawnSync(
      process.execPath,
      [
        join(repo, 'packages/cli/dist/bin.js'),
        'train',
        'mlp-encoder.yaml',
        '--set',
        'model.hiden=8',
      ],
      { cwd: dir, encoding: 'utf8', env: { ...process.env, MLFLOW_TRACKING_URI: '' } },
    );
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/model\.hiden.*did you mean 'hidden'/s);
    expect(execFileSync('git', ['status', '--porcelain'], { cwd: repo, encoding: 'utf8' })).toBe(
      before,
    );
  });
});

/** Every Markdown file of the checkout, tracked or new (ignored files excepted). */
function markdownFiles(): string[] {
  const out = execFileSync(
    'git',
    ['ls-files', '--cached', '--others', '--exclude-standard', '--', '*.md'],
    { cwd: repo, encoding: 'utf8' },
  );
  return [...new Set(out.split('\n').filter(Boolean))].filter((f) => existsSync(join(repo, f)));
}

const markdown = new MarkdownIt();

/** A file's tokens, inline children flattened in, as markdown-it parses it (code blocks are not links). */
function tokens(text: string): Token[] {
  return markdown.parse(text, {}).flatMap((t) => [t, ...(t.children ?? [])]);
}

/** The anchors GitHub gives a Markdown file's headings (its slugger: lower case, duplicates numbered). */
function anchors(text: string): Set<string> {
  const slugger = new GithubSlugger();
  const all = markdown.parse(text, {});
  const out = new Set<string>();
  all.forEach((t, i) => {
    if (t.type !== 'heading_open') return;
    const words = (all[i + 1]!.children ?? [])
      .filter((c) => c.type === 'text' || c.type === 'code_inline')
      .map((c) => c.content);
    out.add(slugger.slug(words.join('')));
  });
  return out;
}

/**
 * Relative links and images of one Markdown file that do not resolve: a target
 * missing from the checkout, one outside the repository, an absolute path, or a
 * `#anchor` no heading of the target Markdown file has. URLs with a scheme are
 * not followed.
 */
function brokenLinks(file: string): string[] {
  const text = readFileSync(join(repo, file), 'utf8');
  const broken: string[] = [];
  for (const t of tokens(text)) {
    const attr = t.type === 'link_open' ? 'href' : t.type === 'image' ? 'src' : null;
    const target = attr === null ? null : String(t.attrGet(attr) ?? '');
    if (target === null || /^[a-z][a-z\d+.-]*:/i.test(target) || target.startsWith('//')) continue;
    const [path = '', anchor] = decodeURI(target).split('#');
    const full = path === '' ? join(repo, file) : resolve(repo, dirname(file), path);
    const inside = relative(repo, full);
    if (isAbsolute(path) || inside.startsWith('..') || isAbsolute(inside)) {
      broken.push(`${file}: ${target} (outside the repository)`);
    } else if (!existsSync(full)) {
      broken.push(`${file}: ${target} (no such file)`);
    } else if (anchor && full.endsWith('.md') && !anchors(readFileSync(full, 'utf8')).has(anchor)) {
      broken.push(`${file}: ${target} (no such heading)`);
    }
  }
  return broken;
}

describe('the Markdown speaks only of the repository', () => {
  const mdFiles = markdownFiles();

  it('finds the READMEs and docs/', () => {
    expect(mdFiles).toEqual(expect.arrayContaining(['README.md', 'docs/design.md']));
    expect(mdFiles.length).toBeGreaterThan(10);
  });

  it('every relative link and image resolves to a file (and heading) of the repository', () => {
    expect(mdFiles.flatMap(brokenLinks)).toEqual([]);
  });

  it('no file names design or recipe notes kept outside the repository', () => {
    // the pattern is built so that this file does not match it
    const outside = ['DESIGN', 'RECIPES'].map((n) => `${n}\\.md`).concat('\\.\\./shared\\b');
    const r = spawnSync('git', ['grep', '-n', '-I', '-E', outside.join('|')], {
      cwd: repo,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(1); // git grep: 1 = no line matched
    expect(r.stdout).toBe('');
  });
});

/** The README's "The command line" block: one usage line per command form. */
function readmeUsage(): string[] {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const section = /^## The command line\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? '';
  const block = /^```\n([\s\S]*?)^```/m.exec(section)?.[1] ?? '';
  return block.split('\n').filter((l) => l.trim() !== '');
}

/** Every command users can run ("eval knn", ...; hidden and commander's help excluded), with its long flags. */
function registeredCommands(): Map<string, Set<string>> {
  const program = createProgram({ argv: [], exitCode: 0 });
  const help = program.createHelp();
  const out = new Map<string, Set<string>>();
  const walk = (cmd: typeof program, words: string[]): void => {
    const subs = help.visibleCommands(cmd).filter((c) => cmd.commands.includes(c));
    if (subs.length === 0) {
      const flags = help
        .visibleOptions(cmd)
        .map((o) => o.long)
        .filter((f): f is string => f !== undefined && f !== '--help');
      out.set(words.join(' '), new Set(flags));
    }
    for (const c of subs) walk(c, [...words, c.name()]);
  };
  for (const c of help.visibleCommands(program).filter((c) => program.commands.includes(c))) {
    walk(c, [c.name()]);
  }
  return out;
}

describe('README "The command line" lists the CLI as registered', () => {
  const usage = readmeUsage();
  const commands = registeredCommands();
  /** The registered command a usage line is about: the longest whose words start it. */
  const commandOf = (line: string): string | undefined =>
    [...commands.keys()]
      .filter((c) => line === `contrast ${c}` || line.startsWith(`contrast ${c} `))
      .sort((a, b) => b.length - a.length)[0];

  it('reads the block and the program', () => {
    expect(usage.length).toBeGreaterThan(5);
    expect([...commands.keys()]).toEqual(
      expect.arrayContaining(['train', 'eval knn', 'export', 'embed', 'study run', 'new-method']),
    );
  });

  it('every line is a registered command, and every registered command has a line', () => {
    expect(usage.filter((l) => commandOf(l) === undefined)).toEqual([]);
    const listed = new Set(usage.map(commandOf));
    expect([...commands.keys()].filter((c) => !listed.has(c))).toEqual([]);
  });

  it("each command's lines name exactly its long flags", () => {
    const wrong: string[] = [];
    for (const [command, flags] of commands) {
      const lines = usage.filter((l) => commandOf(l) === command);
      const named = new Set(lines.flatMap((l) => l.match(/--[a-z][a-z-]*/g) ?? []));
      for (const f of flags) if (!named.has(f)) wrong.push(`contrast ${command}: ${f} missing`);
      for (const f of named) if (!flags.has(f)) wrong.push(`contrast ${command}: no ${f}`);
    }
    expect(wrong).toEqual([]);
  });
});

/** The minutes a text gives ("4.3 min", "~13 min"), as written. */
const minutes = (text: string): string[] =>
  [...text.matchAll(/(\d+(?:\.\d+)?) min\b/g)].map((m) => m[1]!);

describe('experiment times: each YAML comment and the README agree', () => {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8').split('\n');
  const yamls = execFileSync('git', ['ls-files', 'experiments/*.yaml', 'experiments/**/*.yaml'], {
    cwd: repo,
    encoding: 'utf8',
  })
    .split('\n')
    .filter(Boolean);

  it('finds the recipes and studies', () => {
    expect(yamls).toEqual(
      expect.arrayContaining(['experiments/moco-fmnist.yaml', 'experiments/studies/momentum.yaml']),
    );
  });

  it('every time the README gives for a file is one its comment gives, and its measured or estimated time is in the README', () => {
    const wrong: string[] = [];
    for (const file of yamls) {
      const comment = readFileSync(join(repo, file), 'utf8')
        .split('\n')
        .filter((l) => l.trimStart().startsWith('#'))
        .join('\n');
      const stated = new Set(minutes(comment));
      // top-level recipes are also named by their file name in the tables
      const names = [file, ...(dirname(file) === 'experiments' ? [`\`${file.slice(12)}\``] : [])];
      const lines = readme.filter((l) => names.some((n) => l.includes(n)));
      const given = new Set(lines.flatMap(minutes));
      for (const m of given) if (!stated.has(m)) wrong.push(`${file}: README says ${m} min`);
      for (const m of comment.matchAll(/(?:measured|estimated): ~?(\d+(?:\.\d+)?) min/g)) {
        if (!given.has(m[1]!)) wrong.push(`${file}: ${m[0]} is not in the README`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
