/**
 * Where a command's words go. stdout carries the result: the human summary, or
 * with --json exactly one JSON object (the summary then goes to stderr). stderr
 * carries progress, information and warnings; --quiet keeps only warnings and
 * errors. Writes go through process.stdout / process.stderr at call time, so
 * tests that capture those streams see everything.
 */
export class Output {
  readonly json: boolean;
  readonly quiet: boolean;
  private printed = false;

  constructor(options: { json?: boolean; quiet?: boolean } = {}) {
    this.json = options.json ?? false;
    this.quiet = options.quiet ?? false;
  }

  /** An informational line on stderr (none with --quiet). */
  info = (line: string): void => {
    if (!this.quiet) process.stderr.write(`${line}\n`);
  };

  /** A warning on stderr, also with --quiet. */
  warn = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };

  /**
   * For libraries' `log` callbacks, which mix information and warnings in one
   * stream: warnings (an MLflow server away or refusing, skipped files, a
   * checkpoint passed over) are kept with --quiet, the rest is information.
   */
  log = (line: string): void => {
    if (isWarning(line)) this.warn(line);
    else this.info(line);
  };

  /** The human-readable result: stdout, or stderr with --json; none with --json --quiet. */
  result(text: string): void {
    if (!this.json) process.stdout.write(`${text}\n`);
    else if (!this.quiet) process.stderr.write(`${text}\n`);
  }

  /** The machine-readable result, with --json only; one object per command. */
  data(value: Record<string, unknown>): void {
    if (!this.json || this.printed) return;
    this.printed = true;
    process.stdout.write(`${JSON.stringify(value, finite, 2)}\n`);
  }
}

/**
 * Lines of libraries' logs kept with --quiet: warnings, and where a run's data goes (a
 * tracking choice that is not the default, the MLflow run's link).
 */
export function isWarning(line: string): boolean {
  return /^\s*\[(mlflow|tracking)\]|WARNING|skipp|older checkpoint|unusable/i.test(line);
}

/** JSON has no NaN or Infinity: they become null, as JSON.stringify does, but explicitly. */
function finite(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}
