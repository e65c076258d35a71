/**
 * `thinp image …` and `thinp container …`: each command one call of StorageOperations
 * (api/image-operations.ts), so it reads and fails the same through the daemon or locally.
 * Those that mount (load, save, container create, mount, changes, commit) need the daemon,
 * which serves the layers' filesystems; the local engine says so. Archives travel as byte
 * streams, with their progress on a terminal.
 */

import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Command, Option } from 'commander';
import type { StorageOperations } from '../../api/index.js';
import type { ContainerListing, ImageListing } from '../../graph/index.js';
import { type Bytes, formatHumanSize, NotFoundError, UsageError } from '../../util/index.js';
import { sizeArgument } from '../arguments.js';
import { byteProgress } from '../byte-progress.js';
import { type ByteIo, stdinBytes } from '../byte-streams.js';
import { commandPath, formatTable, writeJson } from '../context.js';
import type { CliIo } from '../io.js';
import { withOperations } from '../session.js';

const human = (n: number) => formatHumanSize(n as Bytes);
const short = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);

export function addImageCommands(program: Command, io: ByteIo): void {
  const image = program.command('image').description('images: docker save and OCI archives');
  addLoad(image, io);
  image
    .command('list')
    .description('images: id, tags, layers, size, containers, as a tree of parents')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }, self: Command) => {
      const images = await withOperations(self, io, (ops) => ops.listImages());
      if (o.json) writeJson(io, images);
      else io.stdout.write(formatTable(imageRows(images)));
    });
  image
    .command('remove')
    .description('remove an image (or one of its tags); layers other images use stay')
    .argument('<ref>', 'a tag, an id or a unique prefix of one')
    .action(async (ref: string, _o: unknown, self: Command) => {
      const r = await withOperations(self, io, (ops) => ops.removeImage(ref));
      for (const tag of r.untagged) io.stdout.write(`Untagged: ${tag}\n`);
      if (r.deleted) io.stdout.write(`Deleted: ${r.id} (${r.removedLayers.length} layers)\n`);
    });
  addSave(image, io);
}

function addLoad(image: Command, io: ByteIo): void {
  image
    .command('load')
    .description('load every image of a docker save tarball or an OCI image layout archive')
    .option('-i, --input <file>', 'the archive (default: stdin)')
    .option('--json', 'machine-readable output')
    .action(async (o: { input?: string; json?: boolean }, self: Command) => {
      const { source, total } = await archiveSource(io, self, o.input);
      const progress = byteProgress(io, 'loading', total);
      let read = 0;
      const counted = async function* () {
        for await (const chunk of source) {
          read += chunk.length;
          progress.update(read);
          yield chunk;
        }
      };
      try {
        const loaded = await withOperations(self, io, (ops) =>
          ops.loadImage(Readable.from(counted())),
        );
        progress.stop();
        if (o.json) writeJson(io, loaded);
        else for (const l of loaded) io.stdout.write(loadedLine(l));
      } finally {
        progress.stop();
      }
    });
}

function addSave(image: Command, io: CliIo): void {
  image
    .command('save')
    .description('write images as a docker save tarball (docker load reads it)')
    .argument('<ref...>', 'images: tags or ids')
    .requiredOption('-o, --output <file>', 'the tarball to write')
    .action(async (refs: string[], o: { output: string }, self: Command) => {
      const output = path.resolve(io.cwd, o.output);
      const temp = `${output}.thinp-partial`;
      const progress = byteProgress(io, 'saving');
      let written = 0;
      try {
        await withOperations(self, io, async (ops) => {
          const tar = await ops.saveImage(refs);
          const count = async function* (source: AsyncIterable<Buffer>) {
            for await (const chunk of source) {
              written += chunk.length;
              progress.update(written);
              yield chunk;
            }
          };
          await pipeline(tar, count, createWriteStream(temp, { mode: 0o644 }));
        });
        await rename(temp, output);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      } finally {
        progress.stop();
      }
      io.stdout.write(`Saved: ${refs.join(' ')} to ${o.output} (${human(written)})\n`);
    });
}

export function addContainerCommands(program: Command, io: CliIo): void {
  const container = program
    .command('container')
    .description('containers: snapshots of their image');
  container
    .command('create')
    .description('create a container from an image: an init layer and a read-write layer')
    .requiredOption('--image <ref>', 'the image')
    .option('--name <name>', 'name of the container')
    .addOption(
      new Option('--size <size>', 'size of its filesystem (at least the base size)').argParser(
        sizeArgument,
      ),
    )
    .action(async (o: { image: string; name?: string; size?: Bytes }, self: Command) => {
      const spec = {
        ...(o.name === undefined ? {} : { name: o.name }),
        ...(o.size === undefined ? {} : { size: o.size }),
      };
      const c = await withOperations(self, io, (ops) => ops.createContainer(o.image, spec));
      io.stdout.write(`${c.id}\n`);
    });
  const simple = (
    verb: string,
    description: string,
    run: (ops: StorageOperations, ref: string) => Promise<string>,
  ) =>
    container
      .command(verb)
      .description(description)
      .argument('<container>', 'its name, id or a unique prefix of the id')
      .action(async (ref: string, _o: unknown, self: Command) => {
        io.stdout.write(await withOperations(self, io, (ops) => run(ops, ref)));
      });
  simple(
    'mount',
    'mount a container (one more reference); prints its root folder',
    async (ops, ref) => `${await ops.mountContainer(ref)}\n`,
  );
  simple(
    'unmount',
    'drop one reference to a mounted container; the last unmounts it',
    async (ops, ref) => {
      await ops.unmountContainer(ref);
      return '';
    },
  );
  simple('remove', 'remove a container (deferred while mounted)', async (ops, ref) => {
    const r = await ops.removeContainer(ref);
    if (r.outcome === 'removed') return `${r.name}\n`;
    io.stderr.write(
      `thinp: container '${r.name}' is mounted; its layers go once unmounted ` +
        `('thinp layer unmount ${r.id}')\n`,
    );
    return `${r.name}\n`;
  });
  simple('diff', "the container's changes: A added, C changed, D deleted", async (ops, ref) =>
    (await ops.containerChanges(ref)).map((c) => `${'CAD'[c.kind]} ${c.path}\n`).join(''),
  );
  container
    .command('commit')
    .description("a new image: the container's image plus a layer of its changes")
    .argument('<container>', 'its name, id or a unique prefix of the id')
    .argument('[tag]', 'name:tag for the new image')
    .action(async (ref: string, tag: string | undefined, _o: unknown, self: Command) => {
      const r = await withOperations(self, io, (ops) => ops.commitContainer(ref, tag));
      io.stdout.write(`${r.id}\n`);
    });
  container
    .command('list')
    .description('containers: id, name, image, size of their changes')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }, self: Command) => {
      const all = await withOperations(self, io, (ops) => ops.listContainers());
      if (o.json) writeJson(io, all);
      else io.stdout.write(formatTable(containerRows(all)));
    });
}

/** The archive's bytes: the file `input`, or stdin when it is not a terminal; its size if known. */
async function archiveSource(
  io: ByteIo,
  self: Command,
  input: string | undefined,
): Promise<{ source: AsyncIterable<Uint8Array>; total: number | undefined }> {
  if (input !== undefined) {
    const file = path.resolve(io.cwd, input);
    const found = await stat(file).catch(() => undefined);
    if (found?.isFile() !== true) {
      throw new NotFoundError(`there is no file ${input}`, {
        hint: "give the path of an image archive (made by 'docker save' or an OCI tool)",
      });
    }
    return { source: createReadStream(file), total: found.size };
  }
  const stdin = io.stdin ?? process.stdin;
  if ((stdin as { isTTY?: boolean }).isTTY === true) {
    throw new UsageError(
      `'${commandPath(self)}' reads the archive from stdin, which is a terminal`,
      {
        hint: 'give -i FILE, or pipe the archive in',
      },
    );
  }
  return { source: stdinBytes(io), total: undefined };
}

// ---------------------------------------------------------------------------------------

function loadedLine(l: { id: string; tags: string[] }): string {
  return l.tags.length === 0
    ? `Loaded image ID: ${l.id}\n`
    : l.tags.map((t) => `Loaded image: ${t}\n`).join('');
}

/** Rows of the image table, children under their parent, indented. */
function imageRows(images: readonly ImageListing[]): string[][] {
  const rows = [['IMAGE ID', 'TAGS', 'LAYERS', 'SIZE', 'CONTAINERS', 'CREATED']];
  const visit = (parent: string | null, depth: number) => {
    for (const i of images.filter((x) => x.parent === parent)) {
      const indent = depth === 0 ? '' : `${'  '.repeat(depth - 1)}└─ `;
      rows.push([
        `${indent}${short(i.id)}`,
        i.tags.join(',') || '<none>',
        String(i.layers.length),
        human(i.size),
        String(i.containers),
        i.created ?? '-',
      ]);
      visit(i.id, depth + 1);
    }
  };
  visit(null, 0);
  return rows;
}

function containerRows(all: readonly ContainerListing[]): string[][] {
  return [
    ['CONTAINER ID', 'NAME', 'IMAGE', 'SIZE', 'CREATED'],
    ...all.map((c) => [
      short(c.id),
      c.name,
      c.imageTags[0] ?? short(c.image),
      human(c.size),
      c.created,
    ]),
  ];
}
