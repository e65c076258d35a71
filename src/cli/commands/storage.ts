import type { Command } from 'commander';
import { planned } from '../context.js';
import type { CliIo } from '../io.js';
import { addLayerCommands } from './layer.js';

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

function addImageCommands(program: Command, io: CliIo): void {
  const image = program.command('image').description('images: docker save and OCI archives');
  planned(
    image
      .command('load')
      .description('load an image archive')
      .option('-i, --input <file>', 'the archive (default: stdin)'),
    io,
  );
  addVerbs(image, io, '<ref>', [['remove', 'remove an image']]);
  planned(image.command('list').description('list images'), io);
}

function addContainerCommands(program: Command, io: CliIo): void {
  const container = program
    .command('container')
    .description('containers: snapshots of their image');
  planned(
    container
      .command('create')
      .description('create a container from an image')
      .requiredOption('--image <ref>', 'the image')
      .option('--name <name>', 'name of the container'),
    io,
  );
  addVerbs(container, io, '<name>', [
    ['mount', 'mount a container at ROOT/mnt/NAME'],
    ['unmount', 'unmount a container'],
    ['remove', 'remove a container'],
  ]);
  planned(container.command('list').description('list containers'), io);
}
