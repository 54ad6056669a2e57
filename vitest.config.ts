import { readdirSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their sources, so tests never need a build.
const root = import.meta.dirname;
const alias: Record<string, string> = {};
for (const group of ['packages', 'plugins']) {
  for (const dir of readdirSync(join(root, group))) {
    const entry = join(root, group, dir, 'src/index.ts');
    if (!existsSync(entry)) continue;
    const name = group === 'plugins' ? `@contrast/plugin-${dir}` : `@contrast/${dir}`;
    alias[name] = resolve(entry);
  }
}

export default defineConfig({
  resolve: { alias },
  test: {
    include: [
      'packages/*/src/**/*.test.ts',
      'plugins/*/src/**/*.test.ts',
      'experiments/**/*.test.ts',
    ],
    setupFiles: [resolve(root, 'vitest.setup.ts')],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
  },
});
