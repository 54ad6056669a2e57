import { ContractError, UnknownNameError } from './errors.js';

/** Edit distance, for "did you mean" suggestions. */
export function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The closest candidate within a reasonable distance, or undefined. */
export function nearest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = levenshtein(name.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

/** A map keyed by name whose misses list the known names and the nearest match. */
export class Registry<T> {
  private readonly entries = new Map<string, T>();

  constructor(readonly kind: string) {}

  register(name: string, value: T): this {
    if (this.entries.has(name)) {
      throw new ContractError(`${this.kind} '${name}' is registered twice`, {
        hint: `give the second ${this.kind} another name`,
      });
    }
    this.entries.set(name, value);
    return this;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  get(name: string): T {
    const v = this.entries.get(name);
    if (v === undefined) {
      const known = this.names();
      throw new UnknownNameError(this.kind, name, known, nearest(name, known));
    }
    return v;
  }

  names(): string[] {
    return [...this.entries.keys()].sort();
  }
}
