import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { nearest } from './registry.js';
import { ExperimentSchema, type ExperimentConfig } from './schema.js';

/** A schema without its default, optional and refinement wrappers. */
function unwrap(schema: z.ZodTypeAny): z.ZodTypeAny {
  let s: z.ZodTypeAny = schema;
  for (;;) {
    if (s instanceof z.ZodDefault) s = s._def.innerType;
    else if (s instanceof z.ZodOptional) s = s._def.innerType;
    else if (s instanceof z.ZodEffects) s = s._def.schema;
    else return s;
  }
}

/** Known keys of a zod object schema (unwrapping defaults and optionals). */
function objectShape(schema: z.ZodTypeAny): Record<string, z.ZodTypeAny> | undefined {
  const s = unwrap(schema);
  return s instanceof z.ZodObject ? (s.shape as Record<string, z.ZodTypeAny>) : undefined;
}

/** The field names of a zod object schema (through defaults, optionals and refinements); [] for others. */
export function schemaKeys(schema: z.ZodTypeAny): string[] {
  return Object.keys(objectShape(schema) ?? {});
}

/** The object shape at `path` (list indices step into a list's items: data.views.0). */
function shapeAt(
  schema: z.ZodTypeAny,
  path: (string | number)[],
): Record<string, z.ZodTypeAny> | undefined {
  let s: z.ZodTypeAny | undefined = schema;
  for (const p of path) {
    const here = unwrap(s);
    s = here instanceof z.ZodArray && typeof p === 'number' ? here.element : objectShape(here)?.[p];
    if (!s) return undefined;
  }
  return objectShape(s);
}

/** Turns the first zod issue into a ConfigError naming the field and the fix. */
export function toConfigError(error: z.ZodError, schema: z.ZodTypeAny, prefix = ''): ConfigError {
  const issue = error.issues[0]!;
  const base = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0]!;
    const known = Object.keys(shapeAt(schema, issue.path) ?? {});
    const near = nearest(key, known);
    return new ConfigError(base ? `${base}.${key}` : key, 'is not a known field', {
      hint: near
        ? `did you mean '${near}'? Known here: ${known.join(', ')}`
        : `known here: ${known.join(', ')}`,
    });
  }
  const field = base || '(root)';
  let hint: string | undefined;
  if (issue.code === 'invalid_type') {
    hint =
      issue.received === 'undefined'
        ? `add '${field}' (a ${issue.expected})`
        : `use a ${issue.expected}`;
  } else if (issue.code === 'too_small') {
    hint = `use a value ${issue.inclusive ? '>=' : '>'} ${String(issue.minimum)}`;
  } else if (issue.code === 'too_big') {
    hint = `use a value ${issue.inclusive ? '<=' : '<'} ${String(issue.maximum)}`;
  } else if (issue.code === 'invalid_enum_value') {
    hint = `use one of: ${issue.options.join(', ')}`;
  }
  return new ConfigError(field, issue.message, hint ? { hint } : {});
}

/** Validates with a zod schema at the boundary; errors name the field and the fix. */
export function parseWith<S extends z.ZodTypeAny>(
  schema: S,
  value: unknown,
  prefix = '',
): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw toConfigError(r.error, schema, prefix);
  return r.data;
}

/** What applying settings may say: one line per notable change (a method switched by name). */
export interface SettingsOptions {
  note?: (line: string) => void;
}

/**
 * Applies `key.path=value` overrides. Values are parsed as YAML, so numbers,
 * booleans and lists (`--set data.augmentation.crop.scale=[0.08,1]`) keep their type.
 * A different `strategy.name` switches the method (see applySettings).
 */
export function applyOverrides(
  raw: Record<string, unknown>,
  overrides: readonly string[],
  options: SettingsOptions = {},
): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const o of overrides) {
    const eq = o.indexOf('=');
    if (eq <= 0) {
      throw new ConfigError(o, `override is not of the form key=value`, {
        hint: 'write e.g. --set optim.lr=0.06',
      });
    }
    let value: unknown;
    try {
      value = parseYaml(o.slice(eq + 1));
    } catch {
      value = o.slice(eq + 1);
    }
    values[o.slice(0, eq).trim()] = value;
  }
  return applySettings(raw, values, options);
}

/**
 * Sets `dotted.path: value` pairs on a copy of `raw`, in order. A value that is a
 * mapping replaces the whole section (`strategy: { name: end-to-end }` drops the
 * previous strategy's fields). Switching the method by name (`strategy.name` to
 * another method) drops the previous method's fields too, as `extends` does: they
 * belong to its plugin, and a field of the same name may mean something else in
 * the new one (momentum-queue's `momentum` is the key encoder's EMA rate,
 * m = 0.99; memory-bank's is the bank's update rate, 0.5 in Wu et al. 2018).
 * Strategy fields given in the same settings are kept; `options.note` receives
 * one line naming the dropped fields. Switching the loss by name (`loss.name`)
 * drops the previous loss's own options alike (`lambda` of barlow-twins);
 * `loss.temperature` and `loss.symmetric` belong to every loss and stay.
 */
export function applySettings(
  raw: Record<string, unknown>,
  settings: Readonly<Record<string, unknown>>,
  options: SettingsOptions = {},
): Record<string, unknown> {
  const out = structuredClone(raw);
  switchSection('strategy', ['name'], out, settings, options);
  switchSection('loss', LOSS_FIELDS, out, settings, options);
  for (const [dotted, value] of Object.entries(settings)) {
    const path = dotted.split('.');
    let node: Record<string, unknown> = out;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (next === undefined || next === null) node[key] = {};
      else if (typeof next !== 'object' || Array.isArray(next)) {
        throw new ConfigError(dotted, `'${key}' is a value, not a section`, {
          hint: `set '${key}' itself instead`,
        });
      }
      node = node[key] as Record<string, unknown>;
    }
    node[path[path.length - 1]!] = structuredClone(value);
  }
  return out;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** The fields of the loss section that belong to every loss (the rest are the selected loss's options). */
const LOSS_FIELDS = ['name', 'temperature', 'symmetric'];

/**
 * The switch of applySettings for a section chosen by name (`strategy`, `loss`):
 * a new `<section>.name` keeps only the fields in `keep` until the settings apply.
 */
function switchSection(
  section: 'strategy' | 'loss',
  keep: readonly string[],
  out: Record<string, unknown>,
  settings: Readonly<Record<string, unknown>>,
  options: SettingsOptions,
): void {
  const to = settings[`${section}.name`];
  const current = out[section];
  if (!isMap(current) || to === undefined || to === current.name) return;
  const given = new Set(
    Object.keys(settings)
      .filter((k) => k.startsWith(`${section}.`))
      .map((k) => k.split('.')[1]!),
  );
  const dropped = Object.entries(current).filter(([k]) => !keep.includes(k) && !given.has(k));
  out[section] = Object.fromEntries(Object.entries(current).filter(([k]) => keep.includes(k)));
  if (dropped.length === 0) return;
  const from = String(current.name ?? "the method's default");
  const fields = dropped.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
  options.note?.(
    `${section}.name ${from} -> ${String(to)}: dropped ${from}'s fields ${fields} (set ${section}.<field> to give ${String(to)} one)`,
  );
}

/**
 * `extends` inheritance: mappings merge key by key, the child winning; lists and
 * values are replaced. A child naming a different strategy replaces the whole
 * strategy section (the base's plugin options belong to the base's plugin); a
 * child naming a different loss keeps only the base's `loss.temperature` and
 * `loss.symmetric` (the base's loss options belong to the base's loss).
 */
export function mergeExperiment(
  base: Record<string, unknown>,
  child: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(base);
  for (const [k, v] of Object.entries(child)) {
    const b = out[k];
    const renamed = isMap(v) && isMap(b) && v.name !== undefined && v.name !== b.name;
    if (renamed && k === 'loss') {
      const common = Object.fromEntries(Object.entries(b).filter(([f]) => LOSS_FIELDS.includes(f)));
      out[k] = mergeExperiment(common, v as Record<string, unknown>);
      continue;
    }
    const otherStrategy = renamed && k === 'strategy';
    out[k] = isMap(v) && isMap(b) && !otherStrategy ? mergeExperiment(b, v) : structuredClone(v);
  }
  return out;
}

/**
 * Reads an experiment YAML file into a plain object (not yet validated),
 * following `extends: <path relative to the file>` chains.
 */
export function readExperimentFile(
  path: string,
  chain: readonly string[] = [],
): Record<string, unknown> {
  const doc = resolvePluginPaths(readYamlMapping(path), dirname(resolve(path)));
  const ext = doc.extends;
  if (ext === undefined) return doc;
  if (typeof ext !== 'string' || ext === '') {
    throw new ConfigError('extends', `in ${path} must be the path of another experiment YAML`, {
      hint: 'e.g. extends: moco-fmnist.yaml (relative to this file)',
    });
  }
  const here = resolve(path);
  const basePath = resolve(dirname(here), ext);
  if ([...chain, here].includes(basePath)) {
    throw new ConfigError('extends', `cycle: ${[...chain, here, basePath].join(' -> ')}`, {
      hint: 'an experiment cannot extend itself, directly or through others',
    });
  }
  if (!existsSync(basePath)) {
    throw new ConfigError('extends', `in ${path}: ${basePath} does not exist`, {
      hint: 'the path is relative to the file that extends it',
    });
  }
  const { extends: _ext, ...own } = doc;
  return mergeExperiment(readExperimentFile(basePath, [...chain, here]), own);
}

/**
 * `plugins:` entries that are relative paths ('./x', '../x') are relative to the
 * file that names them; they become absolute so a run's config.yaml still finds them.
 */
function resolvePluginPaths(doc: Record<string, unknown>, dir: string): Record<string, unknown> {
  if (!Array.isArray(doc.plugins)) return doc;
  const plugins = doc.plugins.map((p: unknown) =>
    typeof p === 'string' && /^\.\.?\//.test(p) ? resolve(dir, p) : p,
  );
  return { ...doc, plugins };
}

function readYamlMapping(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(
      '(file)',
      `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      {
        hint: 'check the path to the experiment YAML',
        cause: e,
      },
    );
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError('(file)', `${path} is not valid YAML: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError('(root)', `${path} must hold a mapping of fields`, {
      hint: 'see experiments/moco-fmnist.yaml',
    });
  }
  return doc as Record<string, unknown>;
}

/** File + overrides -> validated experiment config. */
export function loadExperiment(
  path: string,
  overrides: readonly string[] = [],
  options: SettingsOptions = {},
): ExperimentConfig {
  return parseExperiment(applyOverrides(readExperimentFile(path), overrides, options));
}

export function parseExperiment(raw: unknown): ExperimentConfig {
  return parseWith(ExperimentSchema, raw);
}

/** Leaf values of a nested object by dotted path (arrays compared as JSON). */
function leaves(value: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      leaves(v, prefix ? `${prefix}.${k}` : k, out);
    }
  } else {
    out.set(prefix, JSON.stringify(value));
  }
  return out;
}

/**
 * Fields whose values differ between two configs, skipping paths under any of
 * `ignore` (e.g. 'tracking'). Used to refuse resuming with a changed recipe.
 */
export function configDiff(
  a: unknown,
  b: unknown,
  ignore: readonly string[] = [],
): { field: string; was: string; now: string }[] {
  const la = leaves(a);
  const lb = leaves(b);
  const fields = [...new Set([...la.keys(), ...lb.keys()])].sort();
  const skip = (f: string) => ignore.some((p) => f === p || f.startsWith(`${p}.`));
  return fields
    .filter((f) => !skip(f) && la.get(f) !== lb.get(f))
    .map((f) => ({ field: f, was: la.get(f) ?? '(absent)', now: lb.get(f) ?? '(absent)' }));
}
