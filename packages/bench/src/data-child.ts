#!/usr/bin/env node
// One data-benchmark measurement in its own process (its peak RSS is its own); prints one JSON line.
import { runDataSpec, type DataSpec } from './data-worker.js';

const spec = JSON.parse(process.argv[2] ?? '{}') as DataSpec;
process.stdout.write(`${JSON.stringify(await runDataSpec(spec))}\n`);
