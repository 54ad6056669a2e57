import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as core from '@contrast/core';
import {
  nearest,
  PluginError,
  readExperimentFile,
  UnknownNameError,
  type Catalog,
  type EncoderPlugin,
  type Plugin,
} from '@contrast/core';
import { loadStudy, studyBases } from '@contrast/study';
import { createCatalog } from '@contrast/trainer';
import { shellLine } from './format.js';
import { buildCommand, packageEntry } from './plugin-build.js';
import * as models from '@contrast/models';
import { endToEndPlugin } from '@contrast/plugin-end-to-end';
import { memoryBankPlugin } from '@contrast/plugin-memory-bank';
import { momentumQueuePlugin } from '@contrast/plugin-momentum-queue';
import { mocoV3Plugin } from '@contrast/plugin-moco-v3';
import { byolPlugin } from '@contrast/plugin-byol';
import { simsiamPlugin } from '@contrast/plugin-simsiam';
import { barlowTwinsPlugin } from '@contrast/plugin-barlow-twins';
import { vicregPlugin } from '@contrast/plugin-vicreg';
import { nnclrPlugin } from '@contrast/plugin-nnclr';
import { swavPlugin } from '@contrast/plugin-swav';
import { dinoPlugin } from '@contrast/plugin-dino';

/** The method plugins this build of the command knows without being told. */
export function builtinPlugins(): Plugin[] {
  return [
    endToEndPlugin(),
    memoryBankPlugin(),
    momentumQueuePlugin(),
    mocoV3Plugin(),
    byolPlugin(),
    simsiamPlugin(),
    barlowTwinsPlugin(),
    vicregPlugin(),
    nnclrPlugin(),
    swavPlugin(),
    dinoPlugin(),
  ];
}

/**
 * What a plugin module that exports a function receives: the Contrast API it
 * composes from, the same instances the command runs (one tfjs engine).
 */
export interface ContrastApi {
  /** @contrast/core: contracts, shared parts (queue, bank, key encoders, losses), `tf`, `z`. */
  core: typeof core;
  /** @contrast/models: encoders and heads (`createPredictor`, `MlpHead`, `encoderEntry`). */
  models: typeof models;
}

const isPath = (spec: string) => spec.startsWith('.') || isAbsolute(spec);

/** Where a plugin spec points: a file, a folder (its package.json entry or index.js), or a package. */
function resolveSpec(spec: string, baseDir: string): string {
  if (!isPath(spec)) {
    try {
      return createRequire(join(baseDir, 'noop.js')).resolve(spec);
    } catch (e) {
      throw new PluginError(spec, `cannot find the plugin package '${spec}' from ${baseDir}`, {
        hint: 'install it there, or give the path of the plugin module or folder',
        cause: e,
      });
    }
  }
  const path = resolve(baseDir, spec);
  if (!existsSync(path)) {
    throw new PluginError(spec, `${path} does not exist`, {
      hint: 'plugin paths are relative to the experiment file that names them',
    });
  }
  if (!statSync(path).isDirectory()) return path;
  const entry = packageEntry(path);
  if (entry && !existsSync(entry.file)) {
    throw new PluginError(spec, `${path} is not built: its entry ${entry.file} does not exist`, {
      hint: `build it (${buildCommand(path, entry.name)}), then run the command again`,
    });
  }
  return entry?.file ?? join(path, 'index.js');
}

function isPlugin(x: unknown): x is Plugin {
  const p = x as Partial<Plugin> | undefined;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.name === 'string' &&
    typeof p.build === 'function' &&
    typeof (p.configSchema as { safeParse?: unknown } | undefined)?.safeParse === 'function' &&
    typeof p.loss?.default === 'string'
  );
}

/** An encoder plugin: a name and encoders, each with an options schema and a factory. */
function isEncoderPlugin(x: unknown): x is EncoderPlugin {
  const p = x as Partial<EncoderPlugin> | undefined;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.name === 'string' &&
    typeof p.encoders === 'object' &&
    p.encoders !== null &&
    Object.values(p.encoders).every(
      (e) =>
        typeof e?.create === 'function' &&
        typeof (e.optionsSchema as { safeParse?: unknown } | undefined)?.safeParse === 'function',
    )
  );
}

/** The plugins a module exports: default or `plugin` / `plugins`, objects or functions of the API. */
function pluginsOf(
  mod: Record<string, unknown>,
  spec: string,
  api: ContrastApi,
): (Plugin | EncoderPlugin)[] {
  const exported = mod.default ?? mod.plugins ?? mod.plugin;
  const value =
    typeof exported === 'function' ? (exported as (a: ContrastApi) => unknown)(api) : exported;
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0 || !list.every((p) => isPlugin(p) || isEncoderPlugin(p))) {
    const registers = list.some(
      (p) => typeof (p as { register?: unknown })?.register === 'function',
    );
    throw new PluginError(spec, 'the module does not export a method or an encoder plugin', {
      hint: registers
        ? 'its plugin has register(container, config): a plugin now returns its method from ' +
          'build(ctx) (ctx.encoder, ctx.loss, ctx.rng.fork(), ...); see docs/adding-a-method.md'
        : 'export default a plugin ({ name, description, configSchema, loss, build }), ' +
          'an encoder plugin ({ name, description, encoders: { <name>: { description, optionsSchema, create } } }) ' +
          'or a function (api) => plugin; see docs/adding-a-method.md',
    });
  }
  return list as (Plugin | EncoderPlugin)[];
}

/**
 * Loads the plugins an experiment names (`plugins:` in its YAML, `--plugin`):
 * package names resolved from `baseDir`, or paths of a module or a folder. A
 * module's default export (or `plugin` / `plugins`) is a plugin (a method, or
 * an encoder plugin), a list of them, or a function that receives the Contrast
 * API and returns them.
 * @throws PluginError naming the spec when it cannot be found or exports no plugin.
 */
export async function loadPlugins(
  specs: readonly string[],
  baseDir = process.cwd(),
): Promise<(Plugin | EncoderPlugin)[]> {
  const api: ContrastApi = { core, models };
  const out: (Plugin | EncoderPlugin)[] = [];
  for (const spec of specs) {
    const file = resolveSpec(spec, baseDir);
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    } catch (e) {
      throw new PluginError(spec, `cannot load ${file}: ${(e as Error).message}`, { cause: e });
    }
    out.push(...pluginsOf(mod, spec, api));
  }
  return out;
}

/**
 * The experiment's `plugins:` followed by the `--plugin` flags it was not already
 * given, path flags made absolute against `cwd`, so the run's config.yaml names
 * every plugin it trained with and `--resume`, `contrast eval` and `contrast export`
 * of the run load them without the flags. Package names stay as given.
 */
export function withPluginFlags(
  plugins: readonly string[],
  flags: readonly string[],
  cwd = process.cwd(),
): string[] {
  const out = [...plugins];
  for (const spec of flags) {
    const named = isPath(spec) ? resolve(cwd, spec) : spec;
    if (!out.includes(named)) out.push(named);
  }
  return out;
}

/**
 * The catalog of an experiment: the built-in plugins plus the ones it names (and
 * `extra`, the `--plugin` flags).
 * @throws UnknownNameError when no plugin defines the experiment's method, with the `--plugin` to add.
 */
export async function catalogFor(
  config: { plugins: readonly string[]; strategy?: { name: string } },
  extra: readonly string[] = [],
): Promise<Catalog> {
  const catalog = createCatalog([
    ...builtinPlugins(),
    ...(await loadPlugins([...config.plugins, ...extra])),
  ]);
  const name = config.strategy?.name;
  if (name !== undefined && !catalog.plugins.has(name)) throw unknownMethod(name, catalog);
  return catalog;
}

/**
 * A method that no loaded plugin defines. Its fix names the plugin folder that
 * `contrast new-method` writes (plugins/<name>, looked for from the working
 * directory up) when there is one, with the build command first if it is not built.
 */
function unknownMethod(name: string, catalog: Catalog): UnknownNameError {
  const known = catalog.plugins.names();
  const near = nearest(name, known);
  let dir: string | undefined;
  for (let d = process.cwd(); dirname(d) !== d && !dir; d = dirname(d)) {
    if (existsSync(join(d, 'plugins', name, 'package.json'))) dir = join(d, 'plugins', name);
  }
  let hint: string;
  if (dir) {
    const rel = relative(process.cwd(), dir);
    const flag = shellLine(['--plugin', rel.startsWith('..') ? rel : `./${rel}`]);
    const entry = packageEntry(dir);
    hint =
      entry && !existsSync(entry.file)
        ? `build the plugin (${buildCommand(dir, entry.name)}), then add ${flag}`
        : `add ${flag} (or list it under plugins: in the experiment)`;
  } else {
    hint = `${near ? `did you mean '${near}'? ` : ''}A plugin's method needs the plugin loaded: add --plugin <package-or-path> (or plugins: in the experiment)`;
  }
  return new UnknownNameError('strategy', name, known, near, hint);
}

/** The catalog of a study: the built-in plugins plus the ones its base experiments name. */
export async function catalogForStudy(studyFile: string): Promise<Catalog> {
  const specs = new Set<string>();
  for (const path of studyBases(loadStudy(studyFile), studyFile)) {
    const base = readExperimentFile(path);
    if (Array.isArray(base.plugins)) for (const p of base.plugins as string[]) specs.add(p);
  }
  return createCatalog([...builtinPlugins(), ...(await loadPlugins([...specs]))]);
}

/** The catalog of a run folder: the built-in plugins plus the ones its config.yaml names. */
export async function catalogForRun(runPath: string): Promise<Catalog> {
  const file = join(runPath, 'config.yaml');
  const raw = existsSync(file) ? readExperimentFile(file) : {};
  return catalogFor({ plugins: Array.isArray(raw.plugins) ? (raw.plugins as string[]) : [] });
}
