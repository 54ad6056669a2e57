#!/usr/bin/env node
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '@contrast/core';
import { BUILTIN_OPTIMIZERS } from '@contrast/trainer';
import { configurationMarkdown } from './config-reference.js';
import { builtinPlugins } from './plugins.js';

/** The reference's place in the repository (from src/ or dist/ alike). */
export const CONFIG_DOC = fileURLToPath(new URL('../../../docs/configuration.md', import.meta.url));

/** The reference as the repository keeps it: generated, then formatted by the repository's prettier. */
export async function configurationDoc(): Promise<string> {
  const prettier = await import('prettier');
  const options = (await prettier.resolveConfig(CONFIG_DOC)) ?? {};
  return prettier.format(configurationMarkdown(builtinPlugins(), BUILTIN_OPTIMIZERS), {
    ...options,
    parser: 'markdown',
  });
}

// `pnpm docs:config`: rewrite docs/configuration.md (only when run as a script)
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const doc = await configurationDoc();
  let before = '';
  try {
    before = readFileSync(CONFIG_DOC, 'utf8');
  } catch {
    /* first time */
  }
  writeFileAtomic(CONFIG_DOC, doc);
  process.stdout.write(`${CONFIG_DOC} ${before === doc ? 'already up to date' : 'written'}\n`);
}
