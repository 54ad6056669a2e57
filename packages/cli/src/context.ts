import type { Command } from 'commander';

/** State shared by the program and its commands for one invocation. */
export interface CliContext {
  /** The arguments after `contrast`, as given. */
  argv: readonly string[];
  /** What the command's action decided; main() returns it. */
  exitCode: number;
}

/** A command module: adds its command (and subcommands) to the program. */
export type RegisterCommand = (program: Command, ctx: CliContext) => void;

/** "contrast study run": the words that name a command. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}
