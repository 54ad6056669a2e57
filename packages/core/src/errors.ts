/**
 * Typed, coded errors. Every error says what went wrong and what to change;
 * codes are stable so scripts and tests can match on them.
 */
export type ErrorCode =
  | 'CONTRAST_CONFIG'
  | 'CONTRAST_UNKNOWN_NAME'
  | 'CONTRAST_DATASET'
  | 'CONTRAST_BACKEND'
  | 'CONTRAST_RUN_DIR'
  | 'CONTRAST_PLUGIN'
  | 'CONTRAST_STATE'
  | 'CONTRAST_TRACKING'
  | 'CONTRAST_CONTRACT'
  | 'CONTRAST_USAGE'
  | 'CONTRAST_DIVERGED'
  | 'CONTRAST_DISTRIBUTED';

export abstract class ContrastError extends Error {
  abstract readonly code: ErrorCode;
  /** The fix, in one sentence, when there is one. */
  readonly hint: string | undefined;

  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(options.hint ? `${message}\n  fix: ${options.hint}` : message, { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
  }
}

/** A config value is missing, of the wrong type or out of range. */
export class ConfigError extends ContrastError {
  readonly code = 'CONTRAST_CONFIG' as const;
  constructor(
    readonly field: string,
    message: string,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    super(`config field '${field}': ${message}`, options);
  }
}

/** A name (strategy, encoder, loss, dataset...) that no registry knows. */
export class UnknownNameError extends ContrastError {
  readonly code = 'CONTRAST_UNKNOWN_NAME' as const;
  constructor(
    readonly kind: string,
    readonly requested: string,
    readonly known: readonly string[],
    readonly nearest: string | undefined,
  ) {
    super(
      `unknown ${kind} '${requested}'. Known: ${known.length ? known.join(', ') : '(none registered)'}`,
      { hint: nearest ? `did you mean '${nearest}'?` : `use one of: ${known.join(', ')}` },
    );
  }
}

/** Dataset files missing, truncated or malformed. */
export class DatasetError extends ContrastError {
  readonly code = 'CONTRAST_DATASET' as const;
  constructor(
    readonly file: string,
    message: string,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    super(`${file}: ${message}`, options);
  }
}

export class BackendError extends ContrastError {
  readonly code = 'CONTRAST_BACKEND' as const;
}

export class RunDirError extends ContrastError {
  readonly code = 'CONTRAST_RUN_DIR' as const;
}

/** Raised by or about a plugin; the plugin's name is stamped on it. */
export class PluginError extends ContrastError {
  readonly code = 'CONTRAST_PLUGIN' as const;
  constructor(
    readonly plugin: string,
    message: string,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    super(`[plugin ${plugin}] ${message}`, options);
  }
}

/** Saved state (weights, queue, checkpoint) that cannot be read back. */
export class StateError extends ContrastError {
  readonly code = 'CONTRAST_STATE' as const;
}

/**
 * Two parts disagree about a contract between them: a tensor of the wrong
 * width, a variable registered twice, a parameter without a gradient. It means a
 * plugin or an extension is wired wrongly, not that the user's input is bad.
 */
export class ContractError extends ContrastError {
  readonly code = 'CONTRAST_CONTRACT' as const;
}

/** A command line the command does not accept: unknown flag, missing or bad value. */
export class UsageError extends ContrastError {
  readonly code = 'CONTRAST_USAGE' as const;
}

/**
 * Training diverged: the loss became NaN or Infinity. Distinct from a config
 * error because the input was valid; the recipe (lr, temperature) is not.
 */
export class DivergedError extends ContrastError {
  readonly code = 'CONTRAST_DIVERGED' as const;
  constructor(
    /** The step (0-based) whose loss was not finite. */
    readonly step: number,
    readonly loss: number,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    super(`training diverged: the loss became ${loss} at step ${step}`, options);
  }
}

/**
 * A data-parallel run cannot go on: a bad cluster description, a port in use, a
 * peer that is unreachable or lost, a collective that timed out, or workers
 * started with different configs. `lostRanks` names the workers that did not
 * answer (empty when every peer answered); the fix is in `hint`.
 */
export class DistributedError extends ContrastError {
  readonly code = 'CONTRAST_DISTRIBUTED' as const;
  /** The workers found unreachable, in rank order (empty when none was). */
  readonly lostRanks: readonly number[];
  constructor(
    message: string,
    options: { hint?: string; cause?: unknown; lostRanks?: readonly number[] } = {},
  ) {
    super(message, options);
    this.lostRanks = options.lostRanks ?? [];
  }
}

export function isContrastError(e: unknown): e is ContrastError {
  return e instanceof ContrastError;
}

/**
 * The tracking server refused a request or could not be reached. `retryable` is
 * true for network errors, 429 and 5xx; `mlflowCode` is the server's error_code.
 */
export class TrackingError extends ContrastError {
  readonly code = 'CONTRAST_TRACKING' as const;
  readonly status: number | undefined;
  readonly mlflowCode: string | undefined;
  readonly retryable: boolean;
  constructor(
    message: string,
    options: {
      hint?: string;
      cause?: unknown;
      status?: number;
      mlflowCode?: string;
      retryable?: boolean;
    } = {},
  ) {
    super(message, options);
    this.status = options.status;
    this.mlflowCode = options.mlflowCode;
    this.retryable = options.retryable ?? false;
  }
}
