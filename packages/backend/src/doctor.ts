import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { resolve } from 'node:path';
import {
  bindingLoads,
  COLLECTIVE_EXPORTS,
  COLLECTIVES_FIX,
  defaultCacheDir,
  findBinding,
  tfjsNodeDir,
  TF_WHEEL,
} from './provision.js';
import { gpuChecks } from './gpu-doctor.js';
import { initBackend } from './select.js';

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

/** Environment checks for `contrast doctor`: what is there, and what to do about what is not (GPU: gpuChecks). */
export async function runDoctor(options: {
  datasetDirs: Record<string, string[]>;
  runDir: string;
}): Promise<DoctorCheck[]> {
  return [
    ...bindingChecks(),
    await backendCheck(),
    ...gpuChecks(),
    threadsCheck(),
    ...Object.entries(options.datasetDirs).map(([name, dirs]) => datasetCheck(name, dirs)),
    cacheCheck(),
    runDirCheck(options.runDir),
  ];
}

/** The binding loads; and it exports the collective ops data-parallel training runs on. */
function bindingChecks(): DoctorCheck[] {
  const pkg = tfjsNodeDir();
  const binding = pkg ? findBinding(pkg) : undefined;
  const loads =
    pkg && binding ? bindingLoads(pkg) : { ok: false, collectiveOps: false, error: 'not built' };
  const setupFix = "run 'contrast setup' (builds against the PyPI TensorFlow wheel, offline)";
  return [
    {
      name: 'native binding',
      ok: loads.ok,
      detail: loads.ok
        ? `${binding}`
        : pkg
          ? `@tensorflow/tfjs-node present, binding ${loads.error}`
          : '@tensorflow/tfjs-node not installed',
      ...(loads.ok ? {} : { fix: setupFix }),
    },
    {
      name: 'collective ops',
      ok: loads.collectiveOps,
      detail: loads.collectiveOps
        ? `available (${COLLECTIVE_EXPORTS.join(', ')}): data-parallel training across workers`
        : `not available: ${loads.ok ? loads.error : 'the binding does not load'}; data-parallel training (--workers) cannot run`,
      ...(loads.collectiveOps ? {} : { fix: loads.ok ? COLLECTIVES_FIX : setupFix }),
    },
  ];
}

async function backendCheck(): Promise<DoctorCheck> {
  try {
    const info = await initBackend();
    return {
      name: 'backend',
      ok: info.name !== 'cpu',
      detail: `${info.name} (tfjs ${info.tfjsVersion}${info.tensorflowVersion ? `, TensorFlow C library ${info.tensorflowVersion}` : ''})`,
      ...(info.name === 'cpu'
        ? { fix: "run 'contrast setup'; the pure-JS backend is ~100x slower" }
        : {}),
    };
  } catch (e) {
    return { name: 'backend', ok: false, detail: (e as Error).message };
  }
}

function threadsCheck(): DoctorCheck {
  const threadEnv = [
    'OMP_NUM_THREADS',
    'TF_NUM_INTRAOP_THREADS',
    'TF_NUM_INTEROP_THREADS',
    'TF_ENABLE_ONEDNN_OPTS',
  ]
    .filter((k) => process.env[k] !== undefined)
    .map((k) => `${k}=${process.env[k]}`);
  const onednnOff = process.env.TF_ENABLE_ONEDNN_OPTS === '0';
  return {
    name: 'threads',
    ok: !onednnOff,
    detail: `${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB; TensorFlow uses all cores by default${threadEnv.length ? `; ${threadEnv.join(' ')}` : ''}`,
    ...(onednnOff
      ? { fix: 'unset TF_ENABLE_ONEDNN_OPTS: turning oneDNN off roughly halves training speed' }
      : {}),
  };
}

function datasetCheck(name: string, dirs: string[]): DoctorCheck {
  const found = dirs.find((d) => existsSync(d));
  return {
    name: `dataset ${name}`,
    ok: found !== undefined,
    detail: found ?? `not found in ${dirs.join(', ')}`,
    ...(found
      ? {}
      : {
          fix: 'apt-get install -y dataset-fashion-mnist, or set data.root / CONTRAST_FASHION_MNIST',
        }),
  };
}

function cacheCheck(): DoctorCheck {
  const cache = defaultCacheDir();
  return {
    name: 'cache',
    ok: true,
    detail: `${cache} (${existsSync(resolve(cache, `libtensorflow-${TF_WHEEL.version}`, '.complete')) ? 'libtensorflow extracted' : 'empty'})`,
  };
}

function runDirCheck(runDir: string): DoctorCheck {
  try {
    mkdirSync(runDir, { recursive: true });
    accessSync(runDir, constants.W_OK);
    return { name: 'run directory', ok: true, detail: resolve(runDir) };
  } catch (e) {
    return {
      name: 'run directory',
      ok: false,
      detail: `${resolve(runDir)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      fix: 'choose a writable folder with --set tracking.dir=PATH',
    };
  }
}
