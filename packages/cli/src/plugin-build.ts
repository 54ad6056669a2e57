import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { shellLine } from './format.js';

/** The entry file a plugin folder's package.json names (exports or main), and the package's name. */
export function packageEntry(dir: string): { file: string; name: string } | undefined {
  const pkgFile = join(dir, 'package.json');
  if (!existsSync(pkgFile)) return undefined;
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as {
    name?: string;
    main?: string;
    exports?: unknown;
  };
  const entry = typeof pkg.exports === 'string' ? pkg.exports : pkg.main;
  return entry ? { file: resolve(dir, entry), name: pkg.name ?? basename(dir) } : undefined;
}

/**
 * The shell command that builds the plugin package in `dir`: from the root of
 * the pnpm workspace that holds it (its `workspace:*` dependencies resolve
 * there), else with npm in the folder itself.
 */
export function buildCommand(dir: string, name: string): string {
  for (let d = dir; dirname(d) !== d; d = dirname(d)) {
    if (existsSync(join(d, 'pnpm-workspace.yaml'))) {
      return `${shellLine(['cd', d])} && pnpm install && ${shellLine(['pnpm', '--filter', name, 'run', 'build'])}`;
    }
  }
  return `${shellLine(['cd', dir])} && npm install && npm run build`;
}
