import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { ConfigError, DatasetError, writeFileAtomic } from '@contrast/core';

/**
 * The index of an image folder or file list: every image once, in a fixed
 * order (sorted relative paths for a folder, the list's order for a list),
 * with its size and modification time, and its class name when the list gives
 * one. Position i in the index is the image's identity: streamed datasets
 * number their samples from it.
 */
export interface ImageIndex {
  /** What was indexed: a folder (scanned recursively) or a list file, absolute. */
  readonly source: string;
  readonly kind: 'folder' | 'list';
  /** The folder `paths` are relative to, absolute. */
  readonly base: string;
  /** Relative paths, '/'-separated. */
  readonly paths: string[];
  /** Bytes. */
  readonly sizes: number[];
  /** Modification times, ms since the epoch. */
  readonly mtimes: number[];
  /** Class name per image, from a list's `label` column. */
  readonly labels?: string[];
}

/** File name endings read as images (what libvips decodes: sharp's JPEG, PNG, WebP, GIF, TIFF, AVIF). */
export const IMAGE_EXTENSIONS = new Set([
  '.jpg',
  '.jpeg',
  '.png',
  '.webp',
  '.gif',
  '.tif',
  '.tiff',
  '.avif',
]);

const CACHE_VERSION = 1;
const CACHE_NAME = '.contrast-index.json';

interface CacheFile {
  version: number;
  kind: 'folder' | 'list';
  source: string;
  /** Folder: mtime of every directory scanned (an added, removed or renamed entry changes it). */
  dirs?: Record<string, number>;
  /** List: the list file's size and mtime. */
  list?: [number, number];
  base: string;
  paths: string[];
  sizes: number[];
  mtimes: number[];
  labels?: string[];
  missing: string[];
}

/** An index and how it was obtained. */
export interface OpenedIndex {
  index: ImageIndex;
  /** True when read from the cache file, false when built by listing the files. */
  cached: boolean;
  /** Where the index is cached (undefined when no cache could be written). */
  cacheFile: string | undefined;
  /** List entries whose file does not exist (skipped and counted; strict refuses them). */
  missing: string[];
}

/**
 * Scans a folder recursively: image files (by extension), hidden files and
 * folders (a leading '.') left out, directory entries visited in sorted order.
 * Returns the index and the mtime of every directory visited.
 * @throws DatasetError when the folder does not exist.
 */
export function scanFolder(root: string): { index: ImageIndex; dirs: Record<string, number> } {
  const base = resolve(root);
  if (!existsSync(base) || !statSync(base).isDirectory()) {
    throw new DatasetError(base, 'is not a folder', {
      hint: 'set data.root to the folder of your images (or data.files to a list of them)',
    });
  }
  const index = { source: base, kind: 'folder' as const, base, paths: [], sizes: [], mtimes: [] };
  const out = index as { paths: string[]; sizes: number[]; mtimes: number[] };
  const dirs: Record<string, number> = {};
  const visit = (rel: string) => {
    const abs = rel ? join(base, rel) : base;
    dirs[rel] = statSync(abs).mtimeMs;
    const names = readdirSync(abs).sort();
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const r = rel ? `${rel}/${name}` : name;
      let st: Stats;
      try {
        st = statSync(join(abs, name)); // follows symbolic links
      } catch {
        continue; // a dangling link
      }
      if (st.isDirectory()) visit(r);
      else if (st.isFile() && IMAGE_EXTENSIONS.has(extname(name).toLowerCase())) {
        out.paths.push(r);
        out.sizes.push(st.size);
        out.mtimes.push(st.mtimeMs);
      }
    }
  };
  visit('');
  return { index, dirs };
}

/** The rows of a list file: `.csv` with a header (`path`, optional `label`), or one path a line. */
function listRows(file: string): { path: string; label?: string }[] {
  const text = readFileSync(file, 'utf8');
  if (extname(file).toLowerCase() !== '.csv') {
    return text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((path) => ({ path }));
  }
  let rows: Record<string, string>[];
  try {
    rows = parseCsv<Record<string, string>>(text, {
      columns: true,
      skip_empty_lines: true,
      trim: true,
      bom: true,
    });
  } catch (e) {
    throw new DatasetError(file, `is not valid CSV (${(e as Error).message})`, {
      hint: 'a header line naming a path column (and optionally label), then one row an image',
      cause: e,
    });
  }
  if (rows.length > 0 && !('path' in rows[0]!)) {
    throw new DatasetError(
      file,
      `has no 'path' column (columns: ${Object.keys(rows[0]!).join(', ')})`,
      {
        hint: "name the column of image paths 'path' in the header line (and the class 'label')",
      },
    );
  }
  return rows.map((r) => ({ path: r.path!, ...(r.label !== undefined ? { label: r.label } : {}) }));
}

/**
 * Reads a file list: each listed file is stat'ed; files that do not exist are
 * returned in `missing` (or refused when strict). Relative paths are relative
 * to the list's folder.
 * @throws DatasetError when the list is unreadable, malformed, or (strict) names a missing file.
 */
export function readFileList(
  file: string,
  strict = false,
): { index: ImageIndex; missing: string[] } {
  const source = resolve(file);
  if (!existsSync(source)) {
    throw new DatasetError(source, 'does not exist', {
      hint: 'set data.files to a .txt or .csv list of images',
    });
  }
  const base = dirname(source);
  const rows = listRows(source);
  const hasLabels = rows.some((r) => r.label !== undefined);
  const index = {
    source,
    kind: 'list' as const,
    base,
    paths: [] as string[],
    sizes: [] as number[],
    mtimes: [] as number[],
    ...(hasLabels ? { labels: [] as string[] } : {}),
  };
  const missing: string[] = [];
  for (const row of rows) {
    const abs = isAbsolute(row.path) ? row.path : join(base, row.path);
    let st: Stats | undefined;
    try {
      st = statSync(abs);
    } catch {
      st = undefined;
    }
    if (!st?.isFile()) {
      if (strict) {
        throw new DatasetError(abs, `listed in ${source} but not a readable file`, {
          hint: 'fix the list, or set data.strict: false to skip missing files',
        });
      }
      missing.push(abs);
      continue;
    }
    index.paths.push(relative(base, abs).split(sep).join('/'));
    index.sizes.push(st.size);
    index.mtimes.push(st.mtimeMs);
    index.labels?.push(row.label ?? '');
  }
  return { index, missing };
}

/**
 * Where the index of `source` (an absolute folder or list path) is cached, in
 * the order tried: beside it (`.<name>.contrast-index.json` in its parent
 * folder: inside a scanned folder, writing the cache would change the mtime
 * that validates it), then the user's cache folder (a read-only parent).
 */
export function indexCacheFiles(source: string): string[] {
  const key = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const home = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return [
    join(dirname(source), `.${basename(source)}${CACHE_NAME}`),
    join(home, 'contrast', 'index', `${key}.json`),
  ];
}

/** A cache that still describes the files: same version and source, directories (or list) unchanged. */
function validCache(file: string, source: string, kind: 'folder' | 'list'): CacheFile | undefined {
  let c: CacheFile;
  try {
    c = JSON.parse(readFileSync(file, 'utf8')) as CacheFile;
  } catch {
    return undefined;
  }
  if (c.version !== CACHE_VERSION || c.source !== source || c.kind !== kind) return undefined;
  try {
    if (kind === 'list') {
      const st = statSync(source);
      return c.list && c.list[0] === st.size && c.list[1] === st.mtimeMs ? c : undefined;
    }
    for (const [rel, mtime] of Object.entries(c.dirs ?? {})) {
      if (statSync(rel ? join(source, rel) : source).mtimeMs !== mtime) return undefined;
    }
    return c;
  } catch {
    return undefined; // a directory went away
  }
}

/** Writes the cache to the first place that takes it; undefined when none does. */
function writeCache(c: CacheFile): string | undefined {
  for (const file of indexCacheFiles(c.source)) {
    try {
      mkdirSync(dirname(file), { recursive: true });
      writeFileAtomic(file, JSON.stringify(c));
      return file;
    } catch {
      /* read-only: try the next place */
    }
  }
  return undefined;
}

/**
 * The index of a folder (scanned recursively) or a file list, from its cache
 * when the cache still matches, else built and cached. The cache sits beside
 * the data (`.<folder or list name>.contrast-index.json` in its parent), or in
 * `~/.cache/contrast/index/` when the data's folder is read-only. A folder's
 * cache is valid while no directory's mtime changed (files added, removed or
 * renamed); a list's while the list file is unchanged. A file rewritten in
 * place under the same name is not noticed: delete the cache file to re-index.
 * @throws DatasetError for a missing folder or list, a malformed list, or (strict) a listed file that is missing.
 */
export function openIndex(
  from: { root: string } | { files: string },
  options: { strict?: boolean } = {},
): OpenedIndex {
  const kind: 'folder' | 'list' = 'root' in from ? 'folder' : 'list';
  const source = resolve('root' in from ? from.root : from.files);
  for (const file of indexCacheFiles(source)) {
    const c = existsSync(file) ? validCache(file, source, kind) : undefined;
    if (!c) continue;
    if (options.strict && c.missing.length > 0) break; // rebuild: strict names the missing file
    const { base, paths, sizes, mtimes, labels } = c;
    const index = { source, kind, base, paths, sizes, mtimes, ...(labels ? { labels } : {}) };
    return { index, cached: true, cacheFile: file, missing: c.missing };
  }
  if (kind === 'folder') {
    const { index, dirs } = scanFolder(source);
    const cacheFile = writeCache({ version: CACHE_VERSION, ...index, dirs, missing: [] });
    return { index, cached: false, cacheFile, missing: [] };
  }
  const { index, missing } = readFileList(source, options.strict);
  const st = statSync(source);
  const cacheFile = writeCache({
    version: CACHE_VERSION,
    ...index,
    list: [st.size, st.mtimeMs],
    missing,
  });
  return { index, cached: false, cacheFile, missing };
}

/**
 * A stable 64-bit hash of a relative path as two 32-bit words (MD5's first
 * eight bytes): word 0 orders images for hold-out and subset choices, word 1
 * assigns shards. Depends on the path alone, so a file keeps its place when
 * others are added.
 */
export function pathHash(path: string): [number, number] {
  const d = createHash('md5').update(path).digest();
  return [d.readUInt32BE(0), d.readUInt32BE(4)];
}

/** Positions of `positions` with the `k` smallest hash words 0 (ties by path), in index order. */
function smallestByHash(
  index: ImageIndex,
  positions: number[],
  k: number,
  hashes: [number, number][],
): number[] {
  const sorted = [...positions].sort(
    (a, b) => hashes[a]![0] - hashes[b]![0] || (index.paths[a]! < index.paths[b]! ? -1 : 1),
  );
  return sorted.slice(0, k).sort((a, b) => a - b);
}

/**
 * Splits an index into held-out and training positions: the `holdout` images
 * with the smallest path hashes are held out (the same ones for every seed and
 * shard); the rest are filtered to shard `shard.index` of `shard.count` (hash
 * word 1 modulo count) and cut to the `subset` smallest hashes (0 = all).
 * Both lists are in index order.
 * @throws ConfigError naming data.holdout when it leaves nothing to train on.
 */
export function splitIndex(
  index: ImageIndex,
  options: { holdout: number; shard?: { index: number; count: number }; subset?: number },
): { train: number[]; heldOut: number[] } {
  const all = index.paths.map((_, i) => i);
  const hashes = index.paths.map(pathHash);
  const heldOut = options.holdout > 0 ? smallestByHash(index, all, options.holdout, hashes) : [];
  if (heldOut.length > 0 && heldOut.length >= all.length) {
    throw new ConfigError('data.holdout', `holds out all ${all.length} images of ${index.source}`, {
      hint: `use fewer than ${all.length}, or add images`,
    });
  }
  const out = new Set(heldOut);
  const shard = options.shard;
  let train = all.filter(
    (i) => !out.has(i) && (!shard || hashes[i]![1] % shard.count === shard.index),
  );
  if (options.subset && options.subset < train.length) {
    train = smallestByHash(index, train, options.subset, hashes);
  }
  return { train, heldOut };
}

/**
 * Class labels of index positions: from the list's `label` column ('csv') or
 * the first folder of each relative path ('folders'). Classes are the sorted
 * names found at `positions`, unless `classes` fixes them (a test split takes
 * its bank's).
 * @throws DatasetError for an image outside a class folder, a name not in `classes`, or more than 255 classes.
 */
export function indexLabels(
  index: ImageIndex,
  positions: number[],
  from: 'csv' | 'folders',
  classes?: readonly string[],
): { labels: Uint8Array; classes: string[] } {
  const nameOf = (i: number): string => {
    if (from === 'csv') return index.labels?.[i] ?? '';
    const p = index.paths[i]!;
    const slash = p.indexOf('/');
    if (slash < 0) {
      throw new DatasetError(join(index.base, p), 'is not inside a class folder', {
        hint: 'put each image in a sub-folder named after its class, or set data.labels: none',
      });
    }
    return p.slice(0, slash);
  };
  const names = positions.map(nameOf);
  const known = classes ? [...classes] : [...new Set(names)].sort();
  if (known.length === 0 || known.length > 255) {
    throw new DatasetError(index.source, `has ${known.length} classes; labels need 1 to 255`, {
      hint: 'label the images with 1 to 255 classes, or set data.labels: none',
    });
  }
  const id = new Map(known.map((c, k) => [c, k]));
  const labels = new Uint8Array(names.length);
  names.forEach((name, k) => {
    const label = id.get(name);
    if (label === undefined) {
      throw new DatasetError(
        join(index.base, index.paths[positions[k]!]!),
        `has class '${name}', which the bank does not have`,
        {
          hint: `the evaluated images' classes must be among the bank's: ${known.join(', ')}`,
        },
      );
    }
    labels[k] = label;
  });
  return { labels, classes: known };
}

/** Digest of the index entries at `positions` (paths, sizes, mtimes): what a tracker records as the data's version. */
export function indexDigest(index: ImageIndex, positions: readonly number[], extra = ''): string {
  const h = createHash('sha256').update(extra);
  for (const i of positions) h.update(`${index.paths[i]}\0${index.sizes[i]}\0${index.mtimes[i]}\n`);
  return h.digest('hex').slice(0, 16);
}
