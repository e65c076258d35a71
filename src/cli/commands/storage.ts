import type { Command } from 'commander';
import { planned } from '../context.js';
import type { CliIo } from '../io.js';
import { addContainerCommands, addImageCommands } from './images.js';

/** The storage driver: layers, images and containers, as Docker's devicemapper driver. */
export function addStorageCommands(program: Command, io: CliIo): void {
  addLayerCommands(program, io);
  addImageCommands(program, io);
  addContainerCommands(program, io);
}

/** Commands that take one argument and no options: [verb, description]. */
type Verbs = readonly (readonly [verb: string, description: string])[];

function addVerbs(group: Command, io: CliIo, argument: string, verbs: Verbs): void {
  for (const [verb, description] of verbs) {
    planned(group.command(verb).description(description).argument(argument), io);
  }
}

function addLayerCommands(program: Command, io: CliIo): void {
  const layer = program
    .command('layer')
    .description('image layers: snapshots of their parent layer');
  planned(
    layer
      .command('create')
      .description('create a layer (a snapshot of its parent, or of the base device)')
      .argument('<id>')
      .option('--parent <id>', 'the parent layer'),
    io,
  );
  addVerbs(layer, io, '<id>', [
    ['remove', 'remove a layer'],
    ['mount', 'mount a layer at ROOT/mnt/ID'],
    ['unmount', 'unmount a layer'],
    ['apply', 'apply a tar diff (with .wh. whiteouts) from stdin; prints the bytes applied'],
    ['diff', 'write the changes against the parent, with whiteouts, as a tar to stdout'],
  ]);
  planned(layer.command('list').description('list layers'), io);
}
