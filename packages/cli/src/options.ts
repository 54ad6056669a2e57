import { InvalidArgumentError, Option } from 'commander';

/** `--set a=1 --set b=2` -> ['a=1', 'b=2']. */
export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** A parser for a number flag: finite, at least `min`, whole when `integer`. */
export function numberArg(
  what: { min: number; integer?: boolean; above?: boolean },
  example: string,
): (value: string) => number {
  const kind = what.integer ? 'a whole number' : 'a number';
  const bound = what.above ? `> ${what.min}` : `>= ${what.min}`;
  return (value: string) => {
    const n = Number(value);
    const ok =
      value.trim() !== '' &&
      Number.isFinite(n) &&
      (what.above ? n > what.min : n >= what.min) &&
      (!what.integer || Number.isInteger(n));
    if (!ok) throw new InvalidArgumentError(`use ${kind} ${bound}, e.g. ${example}`);
    return n;
  };
}

/** Flags shared by the commands that print a result. */
export const jsonOption = () =>
  new Option('--json', 'print the result as one JSON object on stdout (human text goes to stderr)');
export const quietOption = () =>
  new Option('-q, --quiet', 'no progress or information, only warnings, errors and the result');
export const setOption = () =>
  new Option(
    '--set <key=value>',
    'override a config field, YAML-typed (repeatable): --set optim.epochs=2',
  )
    .argParser(collect)
    .default([] as string[]);

/** The environment variable that gives a Redis URL when --queue is not given. */
export const QUEUE_ENV = 'CONTRAST_QUEUE';
export const queueOption = (what: string, fromEnv = true) =>
  fromEnv
    ? new Option('--queue <redis-url>', `${what} (default: $${QUEUE_ENV})`).env(QUEUE_ENV)
    : new Option('--queue <redis-url>', what);
