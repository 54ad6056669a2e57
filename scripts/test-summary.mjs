// The closing line of the test command (scripts/test.sh), from vitest's JSON report:
//   node scripts/test-summary.mjs <report.json> [vitest exit status]
// Counts tests and test files. A file that failed before its tests ran (in beforeAll,
// or at import) has no failed test of its own: its tests count as skipped, so the file
// is what must be counted and named, with the first line of its error.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { relative } from 'node:path';

/** The summary lines for one vitest JSON report (`--reporter=json`). */
function summarize(report, root = process.cwd()) {
  const files = report.testResults ?? [];
  const failedFiles = files.filter((f) => f.status === 'failed');
  const lines = failedFiles.map((f) => {
    const failedTests = (f.assertionResults ?? []).filter((a) => a.status === 'failed').length;
    const why = failedTests
      ? `${failedTests} failed test${failedTests === 1 ? '' : 's'}`
      : `failed outside its tests: ${firstLine(f.message) || "in a describe block's hook (its error is in the output above)"}`;
    return `  FAIL ${relative(root, f.name)}: ${why}`;
  });
  const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  const suites = report.numFailedTestSuites ?? 0; // files and describe blocks
  lines.push(
    `${report.numPassedTests ?? 0} passed, ${report.numFailedTests ?? 0} failed` +
      (skipped ? `, ${skipped} skipped` : '') +
      `; test files: ${files.length - failedFiles.length} passed, ${failedFiles.length} failed` +
      (suites ? `; failed suites: ${suites}` : ''),
  );
  return lines;
}

function firstLine(message) {
  return (
    String(message ?? '')
      .split('\n')
      .find((l) => l.trim())
      ?.trim() ?? ''
  );
}

const [file, status] = process.argv.slice(2);
if (!file || !existsSync(file) || statSync(file).size === 0) {
  console.log(`no vitest report (vitest exited with status ${status ?? '?'} before writing it)`);
} else {
  for (const line of summarize(JSON.parse(readFileSync(file, 'utf8')))) console.log(line);
}
