#!/usr/bin/env node
// One benchmark row in its own process (peak RSS is the row's own); prints one JSON line.
import { leakCheck, runRow } from './worker.js';
import type { RowSpec } from './spec.js';

const arg = JSON.parse(process.argv[2] ?? '{}') as
  RowSpec | { mode: 'leak'; steps: number; device?: 'gpu' };
const result = arg.mode === 'leak' ? await leakCheck(arg.steps, arg.device) : await runRow(arg);
process.stdout.write(`${JSON.stringify(result)}\n`);
