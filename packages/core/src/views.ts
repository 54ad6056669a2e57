import * as tf from '@tensorflow/tfjs';
import { parseWith } from './config.js';
import type { Encoder } from './contracts.js';
import { ConfigError } from './errors.js';
import {
  AugmentationSchema,
  type AugmentationConfig,
  type AugmentationOverrides,
  type ExperimentConfig,
} from './schema.js';

/** The group of the default experiment: two crops with `data.augmentation` (x1 and x2). */
export const DEFAULT_VIEW_GROUP = 'global';

/** A crop group as the augmentation draws it: one pipeline per crop, in crop order. */
export interface CropGroupPlan {
  name: string;
  count: number;
  /** `count` pipelines: data.augmentation, then the group's overrides, then the crop's. */
  crops: AugmentationConfig[];
}

type ViewsSection = Pick<ExperimentConfig['data'], 'augmentation' | 'views'>;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** `base` with `over`'s fields replacing its own; nested sections merge field by field, lists are replaced. */
function overlay<T>(base: T, over: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(over)) return (over === undefined ? base : over) as T;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) if (v !== undefined) out[k] = overlay(base[k], v);
  return out as T;
}

/** A group's own augmentation fields (its name, count and perCrop removed). */
function groupOverrides(group: NonNullable<ViewsSection['views']>[number]): AugmentationOverrides {
  const { name: _name, count: _count, perCrop: _perCrop, ...own } = group;
  return own;
}

/**
 * The crop groups of an experiment, each crop's pipeline resolved: without
 * `data.views`, one group 'global' of two crops drawn with `data.augmentation`
 * (the two views of MoCo, SimCLR, BYOL); with it, each group's fields override
 * `data.augmentation` and each `perCrop` entry overrides its group's.
 * @throws ConfigError (data.views...) for a merged pipeline the schema refuses.
 */
export function resolveViews(data: ViewsSection): CropGroupPlan[] {
  if (!data.views) {
    return [{ name: DEFAULT_VIEW_GROUP, count: 2, crops: [data.augmentation, data.augmentation] }];
  }
  return data.views.map((group, g) => {
    const own = overlay(data.augmentation, groupOverrides(group));
    const crops = Array.from({ length: group.count }, (_, i) =>
      parseWith(
        AugmentationSchema,
        overlay(own, group.perCrop?.[i]),
        `data.views.${g}${group.perCrop?.[i] ? `.perCrop.${i}` : ''}`,
      ),
    );
    return { name: group.name, count: group.count, crops };
  });
}

/**
 * Checks `data.views` against itself and the dataset's images, before anything
 * is built: names are distinct; `perCrop` lists at most `count` entries and
 * leaves crop.size to the group (a group's crops share one size); no group's
 * crop is larger than the images; and the first group holds at least two crops, since
 * every method reads x1 and x2 (the first two crops; asymmetric views are one
 * group with `perCrop` overrides, not two groups of one crop).
 * Returns the resolved groups.
 * @throws ConfigError naming the field (data.views.<i>...) and the fix.
 */
export function checkViews(
  data: ViewsSection,
  image: { height: number; width: number },
): CropGroupPlan[] {
  const seen = new Map<string, number>();
  (data.views ?? []).forEach((group, g) => {
    const field = `data.views.${g}`;
    const first = seen.get(group.name);
    if (first !== undefined) {
      throw new ConfigError(`${field}.name`, `'${group.name}' already names group ${first}`, {
        hint: 'give every group its own name (methods find crops by it)',
      });
    }
    seen.set(group.name, g);
    const perCrop = group.perCrop ?? [];
    if (perCrop.length > group.count) {
      throw new ConfigError(
        `${field}.perCrop`,
        `lists ${perCrop.length} crops for a group of count ${group.count}`,
        { hint: `list at most ${group.count} entries, or raise count` },
      );
    }
    const sized = perCrop.findIndex((c) => c.crop?.size !== undefined);
    if (sized >= 0) {
      throw new ConfigError(
        `${field}.perCrop.${sized}.crop.size`,
        "a group's crops share one size",
        { hint: `set crop.size on the group, or make a group of its own for crops of that size` },
      );
    }
  });
  const groups = resolveViews(data);
  const side = Math.min(image.height, image.width);
  groups.forEach((group, g) => {
    const size = group.crops[0]!.crop.size;
    // data.augmentation alone keeps its earlier freedom (an upsampling crop)
    if (data.views && size !== undefined && size > side) {
      throw new ConfigError(
        `data.views.${g}.crop.size`,
        `crops of ${size} px are larger than the ${image.height} x ${image.width} images`,
        {
          hint: `use at most ${side} (local crops are smaller than the image: DINO's 96 px of 224)`,
        },
      );
    }
  });
  if (groups[0]!.count < 2) {
    throw new ConfigError(
      'data.views.0.count',
      `the first group '${groups[0]!.name}' has ${groups[0]!.count} crop; methods read x1 and x2, its first two`,
      {
        hint: 'give the first group count >= 2; for views that differ (BYOL), list perCrop overrides in that group',
      },
    );
  }
  return groups;
}

/**
 * Checks that the encoder takes every view's crop size, before training: a
 * forward of one black image [1, size, size, C] per size other than the data's
 * (a ViT needs sides its patch divides; a deep net needs sides its strides leave
 * something of). Catches at build what would fail at the first step.
 * @throws ConfigError naming `data.views.<g>.crop.size`, with the encoder's own reason.
 */
export function checkViewSizes(
  groups: readonly CropGroupPlan[],
  encoder: Pick<Encoder, 'name' | 'features'>,
  image: { height: number; width: number; channels: number },
): void {
  groups.forEach((group, g) => {
    const size = group.crops[0]!.crop.size;
    if (size === undefined || (size === image.height && size === image.width)) return;
    try {
      tf.tidy(() => encoder.features(tf.zeros([1, size, size, image.channels]), false));
    } catch (e) {
      const first = e instanceof Error ? (e.message.split('\n')[0] ?? '') : String(e);
      const reason = first.replace(/^config field '[^']*': /, '');
      throw new ConfigError(
        `data.views.${g}.crop.size`,
        `encoder '${encoder.name}' cannot take crops of ${size} px: ${reason}`,
        { hint: (e as { hint?: string }).hint ?? 'choose a crop size the encoder takes', cause: e },
      );
    }
  });
}
