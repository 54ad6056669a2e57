import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The test command's closing line (scripts/test.sh -> scripts/test-summary.mjs) on a
 * real vitest report: files that fail before their tests run (in beforeAll, at import)
 * have no failed test of their own, and must still be counted and named.
 */
const repo = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'contrast-test-command-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** vitest run on `dir` alone (globals, no config), with a JSON report; a clean env, not this run's. */
function vitestOn(files: Record<string, string>): { status: number; report: string } {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const report = join(dir, 'report.json');
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'NODE_OPTIONS'),
  );
  const r = spawnSync(
    join(repo, 'node_modules/.bin/vitest'),
    ['run', '--root', dir, '--globals', '--reporter=json', `--outputFile=${report}`],
    { cwd: dir, env, encoding: 'utf8', timeout: 120_000 },
  );
  return { status: r.status ?? -1, report };
}

function summary(report: string, status: number): string[] {
  const r = spawnSync(
    process.execPath,
    [join(repo, 'scripts/test-summary.mjs'), report, `${status}`],
    {
      cwd: dir,
      encoding: 'utf8',
    },
  );
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.replace(/\n$/, '').split('\n');
}

describe('the test command closing line', () => {
  it('counts and names files that failed in beforeAll or at import', () => {
    const { status, report } = vitestOn({
      'ok.test.js': `describe('ok', () => { it('passes', () => expect(1).toBe(1)); });\n`,
      'hook.test.js': `describe('needs a server', () => {
  beforeAll(() => { throw new Error('mlflow server exited with 1 during start'); });
  it('a', () => expect(1).toBe(1));
  it('b', () => expect(1).toBe(1));
});\n`,
      'import.test.js': `import './no-such-module.js';\nit('never runs', () => expect(1).toBe(1));\n`,
    });
    expect(status).not.toBe(0);
    const json = JSON.parse(readFileSync(report, 'utf8')) as { numFailedTests: number };
    expect(json.numFailedTests).toBe(0); // what the old closing line showed: nothing failed

    const lines = summary(report, status);
    const closing = lines[lines.length - 1]!;
    expect(closing).toMatch(/^1 passed, 0 failed\b/);
    expect(closing).toContain('; test files: 1 passed, 2 failed; failed suites: 3'); // 2 files, 1 describe
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^ {2}FAIL hook\.test\.js: failed outside its tests: in a describe block's hook/,
      ),
    );
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^ {2}FAIL import\.test\.js: failed outside its tests: .*no-such-module/,
      ),
    );
    expect(lines.filter((l) => l.includes('FAIL'))).toHaveLength(2);
  });

  it('says so when vitest wrote no report', () => {
    const lines = summary(join(dir, 'missing.json'), 137);
    expect(lines).toEqual(['no vitest report (vitest exited with status 137 before writing it)']);
  });
});

describe('the build (pnpm build: tsc -b over every package)', () => {
  /** Workspace packages with a build config: folder, name, workspace dependencies (incl. dev). */
  function packages(): { dir: string; name: string; deps: string[] }[] {
    const found = ['packages', 'plugins'].flatMap((group) =>
      readdirSync(join(repo, group))
        .map((d) => join(group, d))
        .filter((d) => existsSync(join(repo, d, 'tsconfig.build.json'))),
    );
    const pkgs = found.map((dir) => {
      const pkg = JSON.parse(readFileSync(join(repo, dir, 'package.json'), 'utf8')) as {
        name: string;
        dependencies?: Record<string, string>;
        devDependencies?: Record<string, string>;
      };
      return {
        dir,
        name: pkg.name,
        all: Object.keys({ ...pkg.dependencies, ...pkg.devDependencies }),
      };
    });
    const names = new Set(pkgs.map((p) => p.name));
    return pkgs.map((p) => ({ ...p, deps: p.all.filter((n) => names.has(n)) }));
  }

  it("each package's tsconfig.build.json is composite and references exactly its workspace dependencies", () => {
    const all = packages();
    expect(all.length).toBeGreaterThan(20);
    const dirOf = new Map(all.map((p) => [p.name, p.dir]));
    for (const p of all) {
      const config = ts.readConfigFile(join(repo, p.dir, 'tsconfig.build.json'), ts.sys.readFile);
      expect(config.error, p.dir).toBeUndefined();
      const c = config.config as {
        compilerOptions?: { composite?: boolean };
        references?: { path: string }[];
      };
      expect(c.compilerOptions?.composite, p.dir).toBe(true);
      const referenced = (c.references ?? []).map((r) =>
        relative(repo, dirname(join(repo, p.dir, r.path))),
      );
      expect(referenced.sort(), p.dir).toEqual(p.deps.map((n) => dirOf.get(n)!).sort());
    }
  });

  it('the root build script builds every package (packages/* and plugins/*)', () => {
    const script = (
      JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { scripts: { build: string } }
    ).scripts.build;
    expect(script).toBe('tsc -b packages/*/tsconfig.build.json plugins/*/tsconfig.build.json');
    for (const p of packages()) expect(p.dir).toMatch(/^(packages|plugins)\/[^/]+$/);
  });
});
