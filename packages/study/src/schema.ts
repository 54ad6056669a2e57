import { z } from 'zod';

/** Settings applied as `dotted.path: value` on top of the base experiment. */
const Settings = z.record(z.string(), z.unknown()).default({});

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
    /** The base experiment YAML, relative to the study file. */
    base: z.string().min(1),
    set: Settings,
    /** x axis label of the plot. */
    x: z.string().default('K (negatives per query)'),
    series: z
      .array(
        z
          .object({
            label: z.string().min(1),
            set: Settings,
            points: z
              .array(z.object({ k: z.number().positive(), set: Settings }).strict())
              .min(1, 'a series needs at least one point'),
          })
          .strict(),
      )
      .min(1, 'a study needs at least one series'),
  })
  .strict();

export type Study = z.infer<typeof StudySchema>;
