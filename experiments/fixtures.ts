import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MlflowClient, MlflowServer } from '@contrast/tracking';

/**
 * A temporary folder holding `base.yaml` (the given experiment) and a real MLflow
 * server (sqlite store, proxied artifacts) under `server/`, with a client for
 * reading runs back. The caller stops the server.
 */
export async function mlflowFixture(
  prefix: string,
  baseYaml: string,
): Promise<{ root: string; base: string; server: MlflowServer; client: MlflowClient }> {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const base = join(root, 'base.yaml');
  writeFileSync(base, baseYaml);
  const server = await MlflowServer.start({ dir: join(root, 'server') });
  return { root, base, server, client: new MlflowClient(server.uri, { auth: {} }) };
}
