import { describe, expect, it } from 'vitest';
import { withPluginFlags } from './plugins.js';

describe('withPluginFlags: the plugins a run records', () => {
  it('appends the flags after the experiment’s own, path flags absolute against the working directory', () => {
    expect(
      withPluginFlags(['/exp/a.mjs', 'pkg-a'], ['./b.mjs', '../c', 'pkg-b', '/abs/d.mjs'], '/w/x'),
    ).toEqual(['/exp/a.mjs', 'pkg-a', '/w/x/b.mjs', '/w/c', 'pkg-b', '/abs/d.mjs']);
  });

  it('names a plugin once, whether the experiment or a flag gave it first', () => {
    expect(withPluginFlags(['/w/b.mjs', 'pkg'], ['./b.mjs', 'pkg', './b.mjs'], '/w')).toEqual([
      '/w/b.mjs',
      'pkg',
    ]);
    expect(withPluginFlags([], [], '/w')).toEqual([]);
  });
});
