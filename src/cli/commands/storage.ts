import type { Command } from 'commander';
import { planned } from '../context.js';
import type { CliIo } from '../io.js';

/** The storage driver: layers, images and containers, as Docker's devicemapper driver. */
export function addStorageCommands(program: Command, io: CliIo): void {
  addLayerCommands(program, io);
  addImageCommands(program, io);
  addContainerCommands(program, io);
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
  for (const [verb, what] of [
    ['remove', 'remove a layer'],
    ['mount', 'mount a layer at ROOT/mnt/ID'],
    ['unmount', 'unmount a layer'],
  ] as const) {
    planned(layer.command(verb).description(what).argument('<id>'), io);
  }
  planned(layer.command('list').description('list layers'), io);
  planned(
    layer
      .command('apply')
      .description('apply a tar diff (with .wh. whiteouts) from stdin')
      .argument('<id>'),
    io,
  );
  planned(
    layer
      .command('diff')
      .description('write the changes against the parent as a tar to stdout')
      .argument('<id>'),
    io,
  );
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
  planned(image.command('list').description('list images'), io);
  planned(image.command('remove').description('remove an image').argument('<ref>'), io);
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
  for (const [verb, what] of [
    ['mount', 'mount a container at ROOT/mnt/NAME'],
    ['unmount', 'unmount a container'],
    ['remove', 'remove a container'],
  ] as const) {
    planned(container.command(verb).description(what).argument('<name>'), io);
  }
  planned(container.command('list').description('list containers'), io);
}
