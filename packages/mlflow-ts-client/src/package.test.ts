import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The package stands alone: no dependency on any @contrast/* package or on
 * TensorFlow, and no runtime dependency at all (Node's standard library only).
 */
const pkgDir = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as Record<
  string,
  Record<string, string> | undefined
>;
const FORBIDDEN = /^(@contrast\/|@tensorflow\/)/;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory()
      ? sources(join(dir, d.name))
      : d.name.endsWith('.ts')
        ? [join(dir, d.name)]
        : [],
  );
}

/** Module specifiers of static imports, re-exports and dynamic imports. */
function importsOf(code: string): string[] {
  const out: string[] = [];
  const re =
    /(?:^|[^\w.])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
  for (const m of code.matchAll(re)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

describe('mlflow-ts-client stands alone', () => {
  it('package.json declares no @contrast/* or TensorFlow package, and no runtime dependency', () => {
    const kinds = ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies'];
    const declared = kinds.flatMap((k) => Object.keys(pkg[k] ?? {}));
    expect(declared.filter((d) => FORBIDDEN.test(d))).toEqual([]);
    expect(Object.keys(pkg.dependencies ?? {})).toEqual([]);
  });

  it('the sources import only their own files, node: built-ins and (in tests) vitest', () => {
    const builtins = new Set(builtinModules);
    const offending: string[] = [];
    for (const file of sources(join(pkgDir, 'src'))) {
      const test = file.endsWith('.test.ts');
      for (const spec of importsOf(readFileSync(file, 'utf8'))) {
        const ok =
          spec.startsWith('./') ||
          spec.startsWith('../') ||
          (spec.startsWith('node:') && builtins.has(spec.slice(5))) ||
          (test && spec === 'vitest');
        if (!ok || FORBIDDEN.test(spec)) offending.push(`${relative(pkgDir, file)}: ${spec}`);
      }
    }
    expect(offending).toEqual([]);
  });

  it('the import scanner sees the forms it must catch', () => {
    const [imp, exp] = ['import', 'export']; // spelled apart so this file does not trip its own scan
    const code = [
      `${imp} { TrackingError } from '@contrast/core';`,
      `${exp} * from '@tensorflow/tfjs';`,
      `${imp} type { X } from 'zod';`,
      `const tf = await ${imp}('@tensorflow/tfjs-node');`,
      `${imp} 'reflect-metadata';`,
      `${imp} {\n  a,\n  b,\n} from './local.js';`,
    ].join('\n');
    expect(importsOf(code)).toEqual([
      '@contrast/core',
      '@tensorflow/tfjs',
      'zod',
      '@tensorflow/tfjs-node',
      'reflect-metadata',
      './local.js',
    ]);
  });
});
