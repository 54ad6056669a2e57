import { isAbsolute, resolve } from 'node:path';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { jsonOption } from '../options.js';
import { Output } from '../output.js';

const EXAMPLES = `
Example:
  contrast new-method sg-queue
  pnpm install && pnpm exec vitest run plugins/sg-queue
  pnpm --filter @contrast/plugin-sg-queue run build
  contrast train my-method.yaml --plugin ./plugins/sg-queue

The plugin trains as written (a MoCo-style queue method with a shared,
stop-gradient key encoder); see docs/adding-a-method.md.`;

/** `contrast new-method`: write a working method plugin skeleton with its test. */
export function registerNewMethod(program: Command, ctx: CliContext): void {
  program
    .command('new-method')
    .description('write a working method plugin skeleton with a test')
    .argument('<name>', 'plugin name, lower-case kebab-case (e.g. sg-queue)')
    .option('--dir <dir>', 'where to write it (default: plugins/<name>)')
    .addOption(jsonOption())
    .addHelpText('after', EXAMPLES)
    .action(async (name: string, flags: { dir?: string; json?: boolean }) => {
      const out = new Output(flags);
      const [{ newMethod }, { buildCommand }, { shellLine }] = await Promise.all([
        import('../scaffold.js'),
        import('../plugin-build.js'),
        import('../format.js'),
      ]);
      const files = newMethod(name, flags.dir);
      const dir = flags.dir ?? `plugins/${name}`;
      const rel = isAbsolute(dir) || dir.startsWith('.') ? dir : `./${dir}`;
      out.result(
        [
          ...files,
          `next: pnpm install && pnpm exec vitest run ${dir}`,
          `train with it: ${buildCommand(resolve(dir), `@contrast/plugin-${name}`)}, then`,
          `  contrast train <experiment> --plugin ${shellLine([rel])} (with strategy: { name: ${name} })`,
        ].join('\n'),
      );
      out.data({ command: 'new-method', ok: true, exitCode: ExitCode.ok, files });
      ctx.exitCode = ExitCode.ok;
    });
}
