/**
 * `thinp layer …`: the storage driver's layers (DESIGN §4), each command one call of
 * StorageOperations, so it reads and fails the same through the daemon or locally. Those
 * that mount (mount, apply, diff, changes) need the daemon, which serves the devices; the
 * local engine says so.
 */

import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { type Command, Option } from 'commander';
import type { LayerListing } from '../../graph/index.js';
import { type Bytes, formatHumanSize, IoError } from '../../util/index.js';
import { sizeArgument } from '../arguments.js';
import { byteProgress } from '../byte-progress.js';
import { type ByteIo, bytesToStdout, stdinBytes } from '../byte-streams.js';
import { formatTable, writeJson } from '../context.js';
import type { CliIo } from '../io.js';
import { withOperations } from '../session.js';

export function addLayerCommands(program: Command, io: ByteIo): void {
  const layer = program
    .command('layer')
    .description('image layers: snapshots of their parent layer (or of the base device)');
  addCreate(layer, io);
  layer
    .command('remove')
    .description('remove a layer (mounted: deferred with dm.use_deferred_deletion)')
    .argument('<id>')
    .action(async (id: string, _o: unknown, self: Command) => {
      const outcome = await withOperations(self, io, (ops) => ops.removeLayer(id));
      if (outcome === 'deferred') {
        io.stderr.write(`thinp: layer '${id}' is mounted; it will be removed once unmounted\n`);
      } else if (outcome === 'absent') {
        io.stderr.write(`thinp: there was no layer '${id}'\n`);
      }
    });
  layer
    .command('mount')
    .description('mount a layer at ROOT/mnt/ID (one more reference); prints ROOT/mnt/ID/rootfs')
    .argument('<id>')
    .action(async (id: string, _o: unknown, self: Command) => {
      io.stdout.write(`${await withOperations(self, io, (ops) => ops.mountLayer(id))}\n`);
    });
  layer
    .command('unmount')
    .description('drop one reference to a mounted layer; the last unmounts it')
    .argument('<id>')
    .action(async (id: string, _o: unknown, self: Command) => {
      await withOperations(self, io, (ops) => ops.unmountLayer(id));
    });
  addList(layer, io);
  addApply(layer, io);
  addDiff(layer, io);
  layer
    .command('changes')
    .description("the layer's changes against its parent: A added, C changed, D deleted")
    .argument('<id>')
    .option('--json', 'machine-readable output: [{path, kind}] with Docker kinds 0, 1, 2')
    .action(async (id: string, o: { json?: boolean }, self: Command) => {
      const changes = await withOperations(self, io, (ops) => ops.layerChanges(id));
      if (o.json) writeJson(io, changes);
      else io.stdout.write(changes.map((c) => `${'CAD'[c.kind]} ${c.path}\n`).join(''));
    });
  layer
    .command('metadata')
    .description("Docker's GetMetadata: DeviceId, DeviceSize, DeviceName")
    .argument('<id>')
    .action(async (id: string, _o: unknown, self: Command) => {
      writeJson(io, await withOperations(self, io, (ops) => ops.layerMetadata(id)));
    });
}

function addCreate(layer: Command, io: CliIo): void {
  layer
    .command('create')
    .description('create a layer: a snapshot of its parent, or of the base device')
    .argument('<id>')
    .option('--parent <id>', 'the parent layer')
    .addOption(
      new Option(
        '--size <size>',
        'virtual size, at least the parent size (filesystem grown)',
      ).argParser(sizeArgument),
    )
    .action(async (id: string, o: { parent?: string; size?: Bytes }, self: Command) => {
      const spec = {
        ...(o.parent === undefined ? {} : { parent: o.parent }),
        ...(o.size === undefined ? {} : { size: o.size }),
      };
      await withOperations(self, io, (ops) => ops.createLayer(id, spec));
    });
}

function addList(layer: Command, io: CliIo): void {
  layer
    .command('list')
    .description('id, parent, size, mapped and exclusive bytes, mounts')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }, self: Command) => {
      const layers = await withOperations(self, io, (ops) => ops.listLayers());
      if (o.json) writeJson(io, layers);
      else io.stdout.write(formatList(layers));
    });
}

function addApply(layer: Command, io: ByteIo): void {
  layer
    .command('apply')
    .description('apply a layer tar (with .wh. whiteouts) from stdin; prints the bytes applied')
    .argument('<id>')
    .action(async (id: string, _o: unknown, self: Command) => {
      const progress = byteProgress(io, `applying to ${id}`, await stdinSize(io));
      let read = 0;
      const counted = async function* () {
        for await (const chunk of stdinBytes(io)) {
          read += chunk.length;
          progress.update(read);
          yield chunk;
        }
      };
      try {
        const size = await withOperations(self, io, (ops) =>
          ops.applyLayer(id, Readable.from(counted())),
        );
        progress.stop();
        io.stdout.write(`${size}\n`);
      } finally {
        progress.stop();
      }
    });
}

function addDiff(layer: Command, io: ByteIo): void {
  layer
    .command('diff')
    .description('write the changes against the parent, with whiteouts, as a tar to stdout')
    .argument('<id>')
    .action(async (id: string, _o: unknown, self: Command) => {
      const progress = byteProgress(io, `diff of ${id}`);
      let written = 0;
      try {
        await withOperations(self, io, async (ops) => {
          const tar = await ops.diffLayer(id);
          await bytesToStdout(io.stdout, async (sink) => {
            for await (const chunk of tar) {
              written += (chunk as Buffer).length;
              progress.update(written);
              await sink(chunk as Buffer);
            }
          });
        });
      } catch (err) {
        if (err instanceof Error && 'code' in err && err.code === 'ECONNRESET') {
          throw new IoError(`layer ${id}`, 'diff', 'the daemon cut the tar short', {
            hint: 'see the daemon log for why',
            cause: err,
          });
        }
        throw err;
      } finally {
        progress.stop();
      }
    });
}

/** The size of standard input when it is a file (for a progress bar with a total). */
async function stdinSize(io: ByteIo): Promise<number | undefined> {
  if (io.stdin !== undefined) return undefined;
  try {
    const st = await stat('/dev/stdin');
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

function formatList(layers: readonly LayerListing[]): string {
  const human = (n: number) => formatHumanSize(n as Bytes);
  const rows = [
    ['ID', 'PARENT', 'DEVICE', 'SIZE', 'MAPPED', 'EXCLUSIVE', 'MOUNTS'],
    ...layers.map((l) => [
      l.deleted ? `${l.id} (removing)` : l.id,
      l.parent ?? '-',
      String(l.deviceId),
      human(l.size),
      human(l.mappedBytes),
      human(l.exclusiveBytes),
      String(l.mounts),
    ]),
  ];
  return formatTable(rows);
}
