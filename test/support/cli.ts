import type { Command } from 'commander';
import { type CliIo, run } from '../../src/cli/index.js';

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `thinp args` in this process, with its output captured. */
export async function thinp(
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv },
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: options.env ?? { PATH: '' },
    cwd: options.cwd,
  };
  const status = await run(args, io);
  return { status, stdout, stderr };
}

/** Every command path of a program: [['pool'], ['pool', 'create'], ...]. */
export function commandPaths(command: Command, prefix: string[] = []): string[][] {
  return command.commands
    .filter((sub) => sub.name() !== 'help')
    .flatMap((sub) => {
      const path = [...prefix, sub.name()];
      return [path, ...commandPaths(sub, path)];
    });
}
