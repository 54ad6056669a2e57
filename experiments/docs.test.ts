import { spawnSync, execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import type { Plugin } from '@contrast/core';
import { methodTemplate, newMethod } from '@contrast/cli';
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
});
