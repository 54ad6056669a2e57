import { z } from 'zod';

/** Settings applied as `dotted.path: value` on top of the base experiment. */
const Settings = z.record(z.string(), z.unknown()).default({});

/**
 * What every run of the study measures after training besides the kNN monitor:
 * `linear: true` runs the linear probe of `contrast eval linear` on the run
 * (frozen pooled backbone features, BN in eval mode, SGD momentum 0.9, wd 0,
 * batch 256, lr x0.1 at 60% and 80% of the epochs; the lr selected on 10% of the
 * training images held out unless `lr` is given).
 */
export const StudyEvaluateSchema = z
  .object({
    linear: z.boolean().default(false),
    /** Probe epochs (MoCo: 100; fewer on CPU). */
    epochs: z.number().int().positive().default(100),
    /** A fixed probe lr; absent: selected on held-out training images. */
    lr: z.number().positive().optional(),
    /** Fit the probe on the first n training images (0 = the whole training split). */
    trainSize: z.number().int().min(0).default(0),
  })
  .strict()
  .default({});

export type StudyEvaluate = z.infer<typeof StudyEvaluateSchema>;

/**
 * A study: a base experiment, settings shared by every run, and series of points.
 * Each point is one run; `k` is its position on the x axis (negatives per query).
 */
export const StudySchema = z
  .object({
    name: z
      .string()
      .min(1)
      .regex(/^[\w.-]+$/, 'use letters, digits, ".", "_" and "-" only'),
    description: z.string().default(''),
    /** The base experiment YAML, relative to the study file (a series' own `base` replaces it). */
    base: z.string().min(1).optional(),
    set: Settings,
    evaluate: StudyEvaluateSchema,
    /** x axis title of the figure (default: the `axis` field, or K for series). */
    x: z.string().min(1).optional(),
    /**
     * 'log' (e.g. K, temperature), 'linear', or 'point' (the tested values evenly
     * spaced, e.g. momentum 0, 0.9, 0.99, 0.999). Ticks are always the tested values.
     */
    xScale: z.enum(['log', 'linear', 'point']).default('log'),
    /** Legend title of a series-form study (default 'series'); axes studies name their fields. */
    legend: z.string().min(1).optional(),
    /**
     * Axes form: `axis` is the swept field on the x axis; `grid` lists values per
     * field (every combination runs; fields other than `axis` become series);
     * `zip` lists values varied together (row i of every list is one run).
     */
    axis: z.string().min(1).optional(),
    grid: z
      .record(z.string(), z.array(z.unknown()).min(1, 'an axis needs at least one value'))
      .optional(),
    zip: z
      .record(z.string(), z.array(z.unknown()).min(1, 'an axis needs at least one value'))
      .optional(),
    /** Each configuration runs once per seed; the report gives mean +- std. */
    seeds: z.array(z.number().int().min(0)).min(1).default([0]),
    series: z
      .array(
        z
          .object({
            label: z.string().min(1),
            /** This series' base experiment (relative to the study file), e.g. a method's own YAML. */
            base: z.string().min(1).optional(),
            set: Settings,
            /** Absent in every series: a categorical study, one configuration per series. */
            points: z
              .array(z.object({ k: z.number().positive(), set: Settings }).strict())
              .min(1, 'a series needs at least one point')
              .optional(),
          })
          .strict(),
      )
      .min(1, 'a study needs at least one series')
      .optional(),
  })
  .strict()
  .superRefine((st, ctx) => {
    const axes = { ...(st.grid ?? {}), ...(st.zip ?? {}) };
    if (!st.base) {
      const without = (st.series ?? []).filter((s) => !s.base).map((s) => s.label);
      if (!st.series || without.length > 0) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['base'],
          message: st.series
            ? `no base experiment for series ${without.map((l) => `'${l}'`).join(', ')}: give the study a base, or each series its own`
            : 'the base experiment YAML is required (relative to the study file)',
        });
      }
    }
    if (st.series) {
      const pointed = st.series.filter((s) => s.points).length;
      if (pointed > 0 && pointed < st.series.length) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['series'],
          message:
            'give points in every series (a sweep) or in none (a categorical study: one configuration per series)',
        });
      }
    }
    if (!st.series && Object.keys(axes).length === 0) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['grid'],
        message: 'an empty study: give series, or a grid / zip with at least one axis',
      });
    }
    if (st.series && Object.keys(axes).length > 0) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['series'],
        message: 'use either series or grid / zip, not both',
      });
    }
    if (Object.keys(axes).length > 0 && (!st.axis || !(st.axis in axes))) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['axis'],
        message: `name the x-axis field, one of: ${Object.keys(axes).join(', ')}`,
      });
    }
    const lengths = new Set(Object.values(st.zip ?? {}).map((v) => v.length));
    if (lengths.size > 1) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['zip'],
        message: 'zipped lists must have the same length',
      });
    }
  });

export type Study = z.infer<typeof StudySchema>;

/** A series-form study whose series have no points: one configuration per series (e.g. one per method). */
export const isCategorical = (study: Pick<Study, 'series'>): boolean =>
  !!study.series && study.series.every((s) => !s.points);
