/** Runs one `thinp` command line and returns its exit status; it never exits the process. */

import { CommanderError } from 'commander';
import { commandPath } from './context.js';
import { EXIT_OK, EXIT_USAGE_ERROR, errorReport, toExitCode } from './exit-code.js';
import type { CliIo } from './io.js';
import { buildProgram, commandNamedIn } from './program.js';

export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      return commanderExit(error, commandPath(commandNamedIn(program, argv)), io);
    }
    io.stderr.write(errorReport(error));
    return toExitCode(error);
  }
}

/** Help and version exit 0; a group without its subcommand has had its help printed. */
function commanderExit(error: CommanderError, path: string, io: CliIo): number {
  if (error.exitCode === 0) return EXIT_OK;
  if (error.code !== 'commander.help') {
    const message = error.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
    io.stderr.write(`thinp: ${message}; see '${path} --help'\n`);
  }
  return EXIT_USAGE_ERROR;
}
