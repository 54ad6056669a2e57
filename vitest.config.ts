import { readdirSync, existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their sources, so tests never need a build: each
// package's name (and each subpath it exports, e.g. `mlflow-ts-client/testing`)
// maps to the source file behind its dist entry.
const root = import.meta.dirname;
const alias: { find: RegExp; replacement: string }[] = [];
for (const group of ['packages', 'plugins']) {
  for (const dir of readdirSync(join(root, group))) {
    const pkgFile = join(root, group, dir, 'package.json');
    if (!existsSync(pkgFile)) continue;
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as {
      name: string;
      exports?: Record<string, { default?: string }>;
    };
    for (const [sub, target] of Object.entries(pkg.exports ?? {})) {
      const src = target.default?.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts');
      if (!src || !existsSync(join(root, group, dir, src))) continue;
      const name = sub === '.' ? pkg.name : `${pkg.name}/${sub.replace(/^\.\//, '')}`;
      alias.push({
        find: new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`),
        replacement: join(root, group, dir, src),
      });
    }
  }
}

// MlflowServer (mlflow-ts-client/testing) runs $MLFLOW_BIN: by default the venv scripts/setup.sh creates.
const mlflowVenv =
  process.env.CONTRAST_MLFLOW_VENV ??
  join(process.env.CONTRAST_CACHE ?? join(homedir(), '.cache', 'contrast'), 'mlflow-venv');
const MLFLOW_BIN =
  process.env.MLFLOW_BIN || process.env.CONTRAST_MLFLOW_BIN || join(mlflowVenv, 'bin', 'mlflow');

// The torch export test runs PyTorch from the venv scripts/setup.sh builds (scripts/torch-requirements.txt).
const torchVenv =
  process.env.CONTRAST_TORCH_VENV ??
  join(process.env.CONTRAST_CACHE ?? join(homedir(), '.cache', 'contrast'), 'torch-venv');
const CONTRAST_TORCH_PYTHON = join(torchVenv, 'bin', 'python');

/** The end-to-end files whose checks involve no clock (see the projects below). */
const UNTIMED = [
  'cli',
  'datasets',
  'docs',
  'eval',
  'experiments',
  'export',
  'export-mlflow',
  'gpu',
  'health',
  'image-folder',
  'methods-study',
  'study',
  'test-command',
  'web-page',
];
const UNTIMED_FILES = `experiments/{${UNTIMED.join(',')}}.test.ts`;

export default defineConfig({
  resolve: { alias },
  test: {
    // the files: the two projects below, relative to --dir (the whole repository from the
    // root, one package with `pnpm --filter <package> test`: its script passes --dir .)
    exclude: ['**/node_modules/**', '**/.git/**', '**/dist/**', '**/.turbo/**', 'runs/**'],
    env: { MLFLOW_BIN, CONTRAST_TORCH_PYTHON },
    setupFiles: [join(root, 'vitest.setup.ts')],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
    maxWorkers: 1,
    projects: [
      {
        // The packages' and plugins' own tests share one process, file after file:
        // TensorFlow's native library is loaded once, not once per file (about a
        // second each). They restore what they change (environment variables, spies)
        // and count tensors relative to their own start.
        extends: true,
        test: {
          name: 'packages',
          include: ['**/src/**/*.test.ts'],
          isolate: false,
          sequence: { groupOrder: 0 },
        },
      },
      {
        // End-to-end files with no clock in their checks (no kill at a moment, no
        // timeout to meet), each in a process of its own, two at a time: much of
        // their time is spent starting processes and servers, which leaves a core idle.
        extends: true,
        test: {
          name: 'experiments',
          include: [UNTIMED_FILES],
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
      {
        // The end-to-end files that stop runs with signals at chosen moments, kill
        // servers and workers, or check timeouts: each in a process of its own, one at
        // a time, with the machine to themselves.
        extends: true,
        test: {
          name: 'experiments-timed',
          include: ['**/*.test.ts'],
          exclude: ['**/src/**', UNTIMED_FILES],
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
