import { describe, expect, it } from 'vitest';
import { UnknownNameError } from './errors.js';
import { levenshtein, nearest, Registry } from './registry.js';

describe('Registry', () => {
  const r = new Registry<number>('strategy')
    .register('momentum-queue', 1)
    .register('memory-bank', 2)
    .register('end-to-end', 3);

  it('returns registered entries', () => {
    expect(r.get('memory-bank')).toBe(2);
    expect(r.names()).toEqual(['end-to-end', 'memory-bank', 'momentum-queue']);
  });

  it('lists the known names and the nearest match for an unknown name', () => {
    let err: unknown;
    try {
      r.get('momentum-queu');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnknownNameError);
    const e = err as UnknownNameError;
    expect(e.code).toBe('CONTRAST_UNKNOWN_NAME');
    expect(e.nearest).toBe('momentum-queue');
    expect(e.message).toContain('Known: end-to-end, memory-bank, momentum-queue');
    expect(e.message).toContain("did you mean 'momentum-queue'?");
  });

  it('does not suggest something unrelated', () => {
    expect(nearest('xyz', ['momentum-queue', 'memory-bank'])).toBeUndefined();
  });

  it('refuses duplicate registration', () => {
    expect(() => new Registry<number>('x').register('a', 1).register('a', 2)).toThrow(/twice/);
  });

  it('computes edit distance', () => {
    expect(levenshtein('kitten', 'sitting')).toBe(3);
    expect(levenshtein('', 'abc')).toBe(3);
  });
});
