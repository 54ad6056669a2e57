import { parseArgs } from 'node:util';
import { initBackend } from '@contrast/backend';
import { ConfigError } from '@contrast/core';
import { exportRun, parseFormats } from '@contrast/export';
import { createCatalog } from '@contrast/trainer';
import { builtinPlugins } from '../plugins.js';

export const EXPORT_USAGE = `  export <run-dir> [--format tfjs,torch,npz,web] [--out DIR] [--head] [--gallery N]
                                                 the trained encoder for use elsewhere, with encoder.json
                                                 (default tfjs,torch,npz into <run-dir>/export; web: the
                                                 nearest-neighbour page over N test images, default 1000)
`;

/** `contrast export <run>`: see @contrast/export's exportRun. Returns the exit code. */
export async function exportCommand(args: string[], usage: string): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      format: { type: 'string' },
      out: { type: 'string' },
      head: { type: 'boolean' },
      gallery: { type: 'string' },
    },
  });
  const run = positionals[0];
  if (!run) {
    process.stderr.write(usage);
    return 2;
  }
  const gallery = values.gallery === undefined ? undefined : Number(values.gallery);
  if (gallery !== undefined && !(Number.isInteger(gallery) && gallery > 0)) {
    throw new ConfigError('--gallery', `must be a whole number > 0, got '${values.gallery}'`);
  }
  const formats = values.format ? parseFormats(values.format) : undefined;
  await initBackend();
  const r = await exportRun(run, createCatalog(builtinPlugins()), {
    ...(formats ? { formats } : {}),
    ...(values.out ? { out: values.out } : {}),
    head: values.head ?? false,
    ...(gallery ? { gallery } : {}),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  process.stdout.write(`exported ${r.sidecar.architecture.encoder} to ${r.dir}\n`);
  for (const [role, file] of Object.entries(r.files))
    process.stdout.write(`  ${role.padEnd(13)}${file}\n`);
  return 0;
}
