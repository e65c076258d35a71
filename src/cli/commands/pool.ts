import { type Command, Option } from 'commander';
import { sizeArgument } from '../arguments.js';
import { planned, requireOneOf } from '../context.js';
import type { CliIo } from '../io.js';

export function addPoolCommands(program: Command, io: CliIo): void {
  const pool = program
    .command('pool')
    .description('the thin pool: create it, see its status, resize it');
  planned(
    pool.command('create').description('create the pool per the options (loop mode by default)'),
    io,
  );
  planned(
    pool
      .command('status')
      .description('transaction id, data and metadata space, held root, mode, needs_check')
      .option('--json', 'machine-readable output'),
    io,
  );
  planned(
    pool
      .command('resize')
      .description('grow the data or metadata space, or add a data device')
      .addOption(
        new Option('--data-size <size>', 'new size of the data space').argParser(sizeArgument),
      )
      .addOption(
        new Option('--metadata-size <size>', 'new size of the metadata space').argParser(
          sizeArgument,
        ),
      )
      .option('--add-device <device>', 'add this block device to the data space'),
    io,
    (self) => requireOneOf(self, ['dataSize', 'metadataSize', 'addDevice']),
  );
}
