#!/usr/bin/env node
import 'reflect-metadata';
import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    // not a usage or input error (those are printed with their fix): a bug, with its stack
    process.stderr.write(`contrast: unexpected error: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
