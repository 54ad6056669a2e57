/**
 * Micro-benchmark of the collectives between 2 local workers:
 * `node packages/distributed/dist/bench.js` (run it under the CPU lock). Each
 * worker all-reduces (mean) ResNet-18's gradient size (11.2 M floats) and a
 * 2.8 M one, as one tensor and as 62 fused tensors, and all-gathers a 128x128
 * batch of keys; it prints the median of 10 (50 for the gather) after 2 warm-ups.
 */
import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loopbackCluster } from './cluster.js';

async function main(): Promise<void> {
  const workers = await loopbackCluster(2);
  const script = join(dirname(fileURLToPath(import.meta.url)), 'testing', 'worker.js');
  const codes = await Promise.all(
    workers.map(
      (_, rank) =>
        new Promise<number | null>((done) => {
          const child = spawn(
            process.execPath,
            [script, JSON.stringify({ workers, rank, scenario: 'bench', timeoutSeconds: 120 })],
            {
              stdio: ['ignore', 'pipe', 'inherit'],
              env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
            },
          );
          child.stdout.on('data', (chunk: Buffer) => {
            for (const line of chunk
              .toString('utf8')
              .split('\n')
              .filter((l) => l.includes('"op"'))) {
              console.log(`[worker ${rank}] ${line}`);
            }
          });
          child.once('exit', done);
        }),
    ),
  );
  if (codes.some((c) => c !== 0)) process.exitCode = 1;
}

void main();
