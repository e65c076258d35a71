import { type Command, Option } from 'commander';
import { sizeArgument } from '../arguments.js';
import { planned, requireOneOf } from '../context.js';
import type { CliIo } from '../io.js';

export function addDeviceCommands(program: Command, io: CliIo): void {
  const device = program
    .command('device')
    .description('named thin devices and snapshots (the device set)');
  planned(
    device
      .command('create')
      .description('create a thin device of a size, or a snapshot of an origin')
      .argument('<name>', 'name of the new device')
      .addOption(
        new Option('--size <size>', 'virtual size (may exceed the pool)').argParser(sizeArgument),
      )
      .option('--origin <name>', 'make a snapshot of this device'),
    io,
    (self) => requireOneOf(self, ['size', 'origin']),
  );
  planned(
    device
      .command('remove')
      .description('remove a device (busy: an error, or deferred when deferred removal is on)')
      .argument('<name>'),
    io,
  );
  planned(
    device
      .command('list')
      .description('name, id, size, mapped, exclusive and shared bytes, origin')
      .option('--json', 'machine-readable output'),
    io,
  );
  planned(
    device
      .command('read')
      .description('copy raw bytes of a device to stdout')
      .argument('<name>')
      .addOption(new Option('--offset <bytes>', 'where to start').argParser(sizeArgument))
      .addOption(
        new Option('--length <bytes>', 'how much to read (default: to the end)').argParser(
          sizeArgument,
        ),
      ),
    io,
  );
  planned(
    device
      .command('write')
      .description('copy raw bytes from stdin to a device')
      .argument('<name>')
      .addOption(new Option('--offset <bytes>', 'where to start').argParser(sizeArgument)),
    io,
  );
}
