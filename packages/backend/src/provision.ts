import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  rmSync,
  symlinkSync,
  lstatSync,
  renameSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { BackendError } from '@contrast/core';

/**
 * Offline provisioning of the native TensorFlow binding of @tensorflow/tfjs-node.
 *
 * The package's own install script downloads libtensorflow from a host that many
 * machines cannot reach. The TensorFlow CPU wheel on PyPI carries the same C API,
 * so we build the binding against its libraries instead:
 *   wheel (cached) -> libtensorflow_cc.so.2, libtensorflow_framework.so.2, include/
 *   -> <tfjs-node>/deps/{lib,include} -> node-pre-gyp --build-from-source.
 * Everything downloaded or extracted lives in the cache directory, outside the repo.
 */
export const TF_WHEEL = { name: 'tensorflow-cpu', version: '2.21.0' } as const;

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

/** Loads tfjs-node in a child process: the only reliable test that the binding links. */
export function bindingLoads(packageDir: string): { ok: boolean; error: string } {
  const r = spawnSync(
    process.execPath,
    [
      '-e',
      `const tf=require(${JSON.stringify(packageDir)}); if(tf.getBackend()!=='tensorflow') process.exit(3)`,
    ],
    {
      encoding: 'utf8',
      timeout: 120_000,
      stdio: ['ignore', 'pipe', 'pipe'],
      // A clean child: no loader hooks inherited from a test runner or a debugger.
      env: { ...process.env, NODE_OPTIONS: '', TF_CPP_MIN_LOG_LEVEL: '2' },
    },
  );
  return { ok: r.status === 0, error: (r.stderr || '').trim().split('\n').slice(-3).join('\n') };
}

function run(cmd: string, args: string[], cwd: string, log: (l: string) => void): void {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    throw new BackendError(
      `'${cmd} ${args.join(' ')}' failed (exit ${r.status ?? r.signal})\n${tail}`,
      {
        hint: 'see the output above; g++, make and python3 are needed to build the binding',
      },
    );
  }
}

function ensureWheel(cacheDir: string, log: (l: string) => void): string {
  const wheels = join(cacheDir, 'wheels');
  const find = () =>
    existsSync(wheels)
      ? readdirSync(wheels).find(
          (f) => f.startsWith(`tensorflow_cpu-${TF_WHEEL.version}-`) && f.endsWith('.whl'),
        )
      : undefined;
  let wheel = find();
  if (!wheel) {
    mkdirSync(wheels, { recursive: true });
    log(`downloading ${TF_WHEEL.name}==${TF_WHEEL.version} from PyPI (about 270 MB, once)`);
    run(
      'python3',
      [
        '-m',
        'pip',
        'download',
        '--no-deps',
        '--only-binary=:all:',
        `${TF_WHEEL.name}==${TF_WHEEL.version}`,
        '-d',
        wheels,
      ],
      cacheDir,
      log,
    );
    wheel = find();
    if (!wheel) throw new BackendError(`pip reported success but no wheel is in ${wheels}`);
  }
  return join(wheels, wheel);
}

const EXTRACT_PY = `
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
libs = {'tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2'}
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        n = info.filename
        if n in libs:
            dest = os.path.join(out, 'lib', os.path.basename(n))
        elif n.startswith('tensorflow/include/') and not n.endswith('/'):
            dest = os.path.join(out, 'include', n[len('tensorflow/include/'):])
        else:
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, 'wb') as dst:
            while True:
                b = src.read(1 << 20)
                if not b: break
                dst.write(b)
`;

function ensureExtracted(cacheDir: string, log: (l: string) => void): string {
  const out = join(cacheDir, `libtensorflow-${TF_WHEEL.version}`);
  const done = join(out, '.complete');
  if (existsSync(done)) return out;
  const wheel = ensureWheel(cacheDir, log);
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  log(`extracting libtensorflow and headers from ${wheel}`);
  run('python3', ['-c', EXTRACT_PY, wheel, tmp], cacheDir, log);
  execFileSync('touch', [join(tmp, '.complete')]);
  rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out); // atomic: a half-extracted tree is never mistaken for a complete one
  return out;
}

function forceSymlink(target: string, path: string): void {
  try {
    lstatSync(path);
    rmSync(path, { recursive: true, force: true });
  } catch {
    /* absent */
  }
  symlinkSync(target, path);
}

/** Makes sure @tensorflow/tfjs-node has a working native binding; idempotent and fast when done. */
export function provisionNativeBackend(options: ProvisionOptions = {}): ProvisionResult {
  const log = options.log ?? ((l: string) => console.error(`[provision] ${l}`));
  const packageDir = tfjsNodeDir();
  if (!packageDir) {
    throw new BackendError('@tensorflow/tfjs-node is not installed', {
      hint: 'run pnpm install in the repository root',
    });
  }
  const existing = findBinding(packageDir);
  if (existing && !options.force && bindingLoads(packageDir).ok) {
    return { packageDir, bindingPath: existing, action: 'present' };
  }
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  mkdirSync(cacheDir, { recursive: true });
  const tfDir = ensureExtracted(cacheDir, log);

  const depsLib = join(packageDir, 'deps', 'lib');
  mkdirSync(depsLib, { recursive: true });
  for (const so of ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2']) {
    forceSymlink(join(tfDir, 'lib', so), join(depsLib, so));
  }
  forceSymlink('libtensorflow_cc.so.2', join(depsLib, 'libtensorflow.so'));
  forceSymlink('libtensorflow_framework.so.2', join(depsLib, 'libtensorflow_framework.so'));
  forceSymlink(join(tfDir, 'include'), join(packageDir, 'deps', 'include'));

  const pkgRequire = createRequire(join(packageDir, 'package.json'));
  const preGyp = join(
    dirname(pkgRequire.resolve('@mapbox/node-pre-gyp/package.json')),
    'bin',
    'node-pre-gyp',
  );
  const nodeDir = existsSync('/usr/include/node/node_api.h')
    ? '/usr'
    : join(dirname(process.execPath), '..');
  log('building the tfjs-node binding against libtensorflow (about 15 s)');
  run(
    process.execPath,
    [preGyp, 'install', '--build-from-source', `--nodedir=${nodeDir}`],
    packageDir,
    log,
  );

  const bindingPath = findBinding(packageDir);
  const check = bindingLoads(packageDir);
  if (!bindingPath || !check.ok) {
    throw new BackendError(`the tfjs-node binding was built but does not load: ${check.error}`, {
      hint: `delete ${join(cacheDir, `libtensorflow-${TF_WHEEL.version}`)} and run 'contrast setup' again`,
    });
  }
  return { packageDir, bindingPath, action: 'built' };
}
