import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
