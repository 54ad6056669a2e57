import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { Output } from '../output.js';

/** `contrast setup`: build the native TensorFlow binding, offline. */
export function registerSetup(program: Command, ctx: CliContext): void {
  program
    .command('setup')
    .description(
      'build the native TensorFlow binding offline against the tensorflow-cpu wheel from PyPI (idempotent)',
    )
    .option('--force', 'rebuild even when the binding loads')
    .action(async (flags: { force?: boolean }) => {
      const out = new Output();
      const { provisionNativeBackend } = await import('@contrast/backend');
      const r = provisionNativeBackend({
        log: (l) => out.info(`[setup] ${l}`),
        ...(flags.force ? { force: true } : {}),
      });
      out.result(
        `native TensorFlow binding ${r.action === 'present' ? 'already present' : 'built'}: ${r.bindingPath}`,
      );
      ctx.exitCode = ExitCode.ok;
    });
}
