/** The `thinp` command tree: global options and every command of DESIGN's command line. */

import { Command } from 'commander';
import { THINP_VERSION } from '../util/index.js';
import { collect } from './arguments.js';
import { addConfigCommand } from './commands/config.js';
import { addDaemonCommand } from './commands/daemon.js';
import { addDeviceCommands } from './commands/device.js';
import { addInfoCommand } from './commands/info.js';
import { addMetadataToolCommands } from './commands/metadata-tools.js';
import { addPoolCommands } from './commands/pool.js';
import { addRescueCommands } from './commands/rescue.js';
import { addStorageCommands } from './commands/storage.js';
import { DEFAULT_ROOT } from './context.js';
import type { CliIo } from './io.js';

export function buildProgram(io: CliIo): Command {
  const program = new Command('thinp')
    .description(
      "Device Mapper thin provisioning and Docker's devicemapper storage driver, in userspace",
    )
    .version(THINP_VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .option('--root <dir>', `root directory (default: $THINP_ROOT, else ${DEFAULT_ROOT})`)
    .option(
      '--config <file>',
      'configuration file: {"storage-driver": "devicemapper", "storage-opts": [...]}',
    )
    .option(
      '--storage-opt <key=value>',
      'storage option, repeatable (see thinp config --help)',
      collect,
    )
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: () => {
        // run() reports every error itself, in thinp's own words
      },
    });
  program.helpCommand('help [command]', 'show help for a command');
  addPoolCommands(program, io);
  addInfoCommand(program, io);
  addMetadataToolCommands(program, io);
  addDeviceCommands(program, io);
  addStorageCommands(program, io);
  addDaemonCommand(program, io);
  addConfigCommand(program, io);
  addRescueCommands(program, io);
  return program;
}

/** The deepest command named in `argv`, for pointing at the right `--help`. */
export function commandNamedIn(program: Command, argv: readonly string[]): Command {
  let command = program;
  for (const word of argv) {
    const sub = command.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (sub !== undefined) command = sub;
  }
  return command;
}
