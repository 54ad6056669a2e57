import { describe, expect, it } from 'vitest';
import { parseExperiment } from './config.js';
import { ConfigError } from './errors.js';
import { groupCrops } from './method.js';
import { checkViews, resolveViews } from './views.js';

const image = { height: 28, width: 28 };
const data = (views: unknown, augmentation: unknown = {}) =>
  parseExperiment({ name: 'v', strategy: { name: 'x' }, data: { views, augmentation } }).data;

/** The ConfigError `f` throws (fails the test when it throws none). */
function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('no ConfigError thrown');
}

describe('data.views: crop groups', () => {
  it('without views: one group of two crops with data.augmentation (the two views)', () => {
    const d = data(undefined, { blur: { p: 0.5 } });
    const groups = checkViews(d, image);
    expect(groups).toEqual([{ name: 'global', count: 2, crops: [d.augmentation, d.augmentation] }]);
  });

  it("a group's fields override data.augmentation field by field, perCrop overrides its group's", () => {
    const d = data(
      [
        {
          name: 'global',
          count: 2,
          crop: { scale: [0.4, 1] },
          perCrop: [{ blur: { p: 1 } }, { blur: { p: 0.1 }, solarize: 0.2 }],
        },
        { name: 'local', count: 4, crop: { size: 12, scale: [0.05, 0.4] }, blur: { p: 0.5 } },
      ],
      { flip: 0.3, blur: { sigma: [0.2, 1.5] } },
    );
    const [global, local] = resolveViews(d);
    expect(global!.crops.map((c) => [c.blur.p, c.solarize])).toEqual([
      [1, 0],
      [0.1, 0.2],
    ]);
    for (const c of global!.crops) {
      expect(c.crop).toMatchObject({ scale: [0.4, 1], ratio: [3 / 4, 4 / 3] });
      expect(c.crop.size).toBeUndefined();
      expect(c.blur.sigma).toEqual([0.2, 1.5]); // from data.augmentation, under the group's blur.p
      expect(c.flip).toBe(0.3);
    }
    expect(local!.count).toBe(4);
    expect(local!.crops).toHaveLength(4);
    expect(local!.crops[3]).toMatchObject({ crop: { size: 12, scale: [0.05, 0.4] }, flip: 0.3 });
    expect(local!.crops[3]!.blur).toEqual({ p: 0.5, sigma: [0.2, 1.5], kernel: 'pil' });
  });

  it('refuses bad groups with a coded error naming the field and the fix', () => {
    const cases: [unknown, string, RegExp][] = [
      [[{ name: 'g', count: 0 }], 'data.views.0.count', /> 0/],
      [[{ name: 'g', count: 2, flip: 2 }], 'data.views.0.flip', /<= 1/],
      [[{ name: 'g', count: 2, blur: { q: 1 } }], 'data.views.0.blur.q', /did you mean 'p'/],
      [[{ name: 'g', count: 2, crop: { scale: [0.5, 0.2] } }], 'data.views.0.crop.scale', /.*/],
      [[], 'data.views', />= 1/],
    ];
    for (const [views, field, hint] of cases) {
      const e = configError(() => data(views));
      expect([e.code, e.field]).toEqual(['CONTRAST_CONFIG', field]);
      expect(e.message).toMatch(hint);
    }
  });

  it('refuses duplicate names, too many perCrop entries, a perCrop size, crops larger than the image, and a first group of one crop', () => {
    const cases: [unknown, string, RegExp][] = [
      [
        [
          { name: 'a', count: 2 },
          { name: 'a', count: 1 },
        ],
        'data.views.1.name',
        /its own name/,
      ],
      [
        [{ name: 'a', count: 2, perCrop: [{}, {}, {}] }],
        'data.views.0.perCrop',
        /at most 2 entries/,
      ],
      [
        [{ name: 'a', count: 2, perCrop: [{}, { crop: { size: 20 } }] }],
        'data.views.0.perCrop.1.crop.size',
        /set crop.size on the group/,
      ],
      [
        [
          { name: 'a', count: 2 },
          { name: 'b', count: 2, crop: { size: 29 } },
        ],
        'data.views.1.crop.size',
        /use at most 28/,
      ],
      [
        [
          { name: 'view1', count: 1 },
          { name: 'view2', count: 1 },
        ],
        'data.views.0.count',
        /count >= 2.*perCrop/,
      ],
    ];
    for (const [views, field, hint] of cases) {
      const e = configError(() => checkViews(data(views), image));
      expect([e.code, e.field]).toEqual(['CONTRAST_CONFIG', field]);
      expect(e.message).toMatch(hint);
    }
    // data.augmentation alone keeps its earlier freedom to upsample
    expect(() => checkViews(data(undefined, { crop: { size: 32 } }), image)).not.toThrow();
  });

  it("groupCrops gives a group's crops, and names the groups when asked for a missing one", () => {
    const crops = ['a', 'b', 'c', 'd', 'e'] as unknown as import('@tensorflow/tfjs').Tensor4D[];
    const groups = [
      { name: 'global', start: 0, count: 2, size: [28, 28] as const },
      { name: 'local', start: 2, count: 3, size: [12, 12] as const },
    ];
    expect(groupCrops({ crops, groups }, 'local')).toEqual(['c', 'd', 'e']);
    expect(groupCrops({ crops, groups }, 'global')).toEqual(['a', 'b']);
    const e = configError(() => groupCrops({ crops, groups }, 'locals'));
    expect(e.field).toBe('data.views');
    expect(e.message).toMatch(/groups: global, local/);
  });
});
