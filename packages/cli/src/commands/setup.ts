import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { Output } from '../output.js';

/** `contrast setup [--gpu]`: build the native TensorFlow binding (and the GPU build), offline. */
export function registerSetup(program: Command, ctx: CliContext): void {
  program
    .command('setup')
    .description(
      'build the native TensorFlow binding offline against the tensorflow-cpu wheel from PyPI (idempotent)',
    )
    .option('--force', 'rebuild even when the binding loads')
    .option(
      '--gpu',
      'also build the GPU backend (tensorflow-gpu): the tensorflow 2.21.0 wheel and the CUDA 12 wheels, about 3.4 GB downloaded once into the cache',
    )
    .action(async (flags: { force?: boolean; gpu?: boolean }) => {
      const out = new Output();
      const { provisionGpuBackend, provisionNativeBackend } = await import('@contrast/backend');
      const options = {
        log: (l: string) => out.info(`[setup] ${l}`),
        ...(flags.force ? { force: true } : {}),
      };
      const r = provisionNativeBackend(options);
      const lines = [
        `native TensorFlow binding ${r.action === 'present' ? 'already present' : 'built'}: ${r.bindingPath}`,
      ];
      if (flags.gpu) {
        const g = provisionGpuBackend(options);
        lines.push(
          `GPU TensorFlow binding ${g.action === 'present' ? 'already present' : 'built'}: ${g.bindingPath}`,
        );
      }
      out.result(lines.join('\n'));
      ctx.exitCode = ExitCode.ok;
    });
}
