/**
 * `thinp image …` and `thinp container …`: thin wrappers over the image operations
 * (graph/image-operations.ts), run by the daemon, which serves the layers' filesystems.
 * Each command parses, calls one operation, prints the result (a table, or --json).
 */

import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Command, Option } from 'commander';
import { remoteImageOperations } from '../../api/index.js';
import type { ContainerListing, ImageListing, ImageOperations } from '../../graph/index.js';
import { type Bytes, formatHumanSize, UnavailableError, UsageError } from '../../util/index.js';
import { sizeArgument } from '../arguments.js';
import type { ByteIo } from '../byte-streams.js';
import { commandConfig, commandPath, writeJson } from '../context.js';
import type { CliIo } from '../io.js';
import { progressBar } from '../progress.js';
import { daemonClient } from '../session.js';

/** Runs `fn` with the operations of the daemon serving the root. */
async function withOperations<T>(
  self: Command,
  io: CliIo,
  fn: (ops: ImageOperations, tempParent: string) => Promise<T>,
): Promise<T> {
  const config = await commandConfig(self, io);
  const client = await daemonClient(config);
  if (client === undefined) {
    throw new UnavailableError(
      `'${commandPath(self)}' needs the daemon: images and containers live in filesystems it serves`,
      { hint: "start it with 'thinp daemon' (or 'npm start') and run the command again" },
    );
  }
  const ops = remoteImageOperations(client, config.layout.controlSocket);
  return fn(ops, path.join(config.root, 'graph', 'tmp'));
}

const absolute = (io: CliIo, file: string) => path.resolve(io.cwd, file);
const human = (n: number) => formatHumanSize(n as Bytes);
const short = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);

export function addImageCommands(program: Command, io: ByteIo): void {
  const image = program.command('image').description('images: docker save and OCI archives');
  image
    .command('load')
    .description('load every image of a docker save tarball or an OCI image layout archive')
    .option('-i, --input <file>', 'the archive (default: stdin)')
    .option('--json', 'machine-readable output')
    .action(async (o: { input?: string; json?: boolean }, self: Command) => {
      await withOperations(self, io, async (ops, temp) => {
        const bar = progressBar(io, 'loading');
        try {
          const input = o.input === undefined ? await stdinToFile(io, self, temp) : undefined;
          try {
            const loaded = await ops.loadImage(
              { input: input ?? absolute(io, o.input as string) },
              (p) => bar.update(p),
            );
            bar.stop();
            if (o.json) writeJson(io, loaded);
            else for (const l of loaded) io.stdout.write(loadedLine(l));
          } finally {
            if (input !== undefined)
              await rm(path.dirname(input), { recursive: true, force: true });
          }
        } finally {
          bar.stop();
        }
      });
    });
  image
    .command('list')
    .description('images: id, tags, layers, size, containers, as a tree of parents')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }, self: Command) => {
      const images = await withOperations(self, io, (ops) => ops.listImages({}));
      if (o.json) writeJson(io, images);
      else io.stdout.write(formatTable(imageRows(images)));
    });
  image
    .command('remove')
    .description('remove an image (or one of its tags); layers other images use stay')
    .argument('<ref>', 'a tag, an id or a unique prefix of one')
    .action(async (ref: string, _o: unknown, self: Command) => {
      const r = await withOperations(self, io, (ops) => ops.removeImage({ ref }));
      for (const tag of r.untagged) io.stdout.write(`Untagged: ${tag}\n`);
      if (r.deleted) io.stdout.write(`Deleted: ${r.id} (${r.removedLayers.length} layers)\n`);
    });
  image
    .command('save')
    .description('write images as a docker save tarball (docker load reads it)')
    .argument('<ref...>', 'images: tags or ids')
    .requiredOption('-o, --output <file>', 'the tarball to write')
    .action(async (refs: string[], o: { output: string }, self: Command) => {
      await withOperations(self, io, async (ops) => {
        const bar = progressBar(io, 'saving');
        try {
          const saved = await ops.saveImage({ refs, output: absolute(io, o.output) }, (p) =>
            bar.update(p),
          );
          bar.stop();
          for (const s of saved) io.stdout.write(`Saved: ${s.id} ${s.tags.join(' ')}\n`);
        } finally {
          bar.stop();
        }
      });
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
      const c = await withOperations(self, io, (ops) =>
        ops.createContainer({ image: o.image, name: o.name, size: o.size }),
      );
      io.stdout.write(`${c.id}\n`);
    });
  const simple = (
    verb: string,
    description: string,
    run: (ops: ImageOperations, ref: string) => Promise<string>,
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
    'mount a container; prints its root folder',
    async (ops, ref) => `${(await ops.mountContainer({ ref })).path}\n`,
  );
  simple('unmount', 'unmount a container (once per mount)', async (ops, ref) => {
    await ops.unmountContainer({ ref });
    return '';
  });
  simple('remove', 'remove a container (deferred while mounted)', async (ops, ref) => {
    const r = await ops.removeContainer({ ref });
    return r.outcome === 'deferred' ? `${r.name}: removed once unmounted\n` : `${r.name}\n`;
  });
  simple('diff', "the container's changes: A added, C changed, D deleted", async (ops, ref) =>
    (await ops.diffContainer({ ref })).map((c) => `${'CAD'[c.kind]} ${c.path}\n`).join(''),
  );
  container
    .command('commit')
    .description("a new image: the container's image plus a layer of its changes")
    .argument('<container>', 'its name, id or a unique prefix of the id')
    .argument('[tag]', 'name:tag for the new image')
    .action(async (ref: string, tag: string | undefined, _o: unknown, self: Command) => {
      const r = await withOperations(self, io, (ops) => ops.commitContainer({ ref, tag }));
      io.stdout.write(`${r.id}\n`);
    });
  container
    .command('list')
    .description('containers: id, name, image, size of their changes')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }, self: Command) => {
      const all = await withOperations(self, io, (ops) => ops.listContainers({}));
      if (o.json) writeJson(io, all);
      else io.stdout.write(formatTable(containerRows(all)));
    });
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

function formatTable(rows: readonly string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map(
      (r) =>
        `${r
          .map((cell, i) => cell.padEnd(widths[i] ?? 0))
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('');
}

/** Copies stdin to a new file under `tempParent`, for the daemon to read. */
async function stdinToFile(io: ByteIo, self: Command, tempParent: string): Promise<string> {
  const stdin = io.stdin ?? (process.stdin as AsyncIterable<Uint8Array>);
  if ((stdin as { isTTY?: boolean }).isTTY === true) {
    throw new UsageError(
      `'${commandPath(self)}' reads the archive from stdin, which is a terminal`,
      {
        hint: 'give -i FILE, or pipe the archive in',
      },
    );
  }
  const dir = await mkdtemp(path.join(tempParent, 'stdin-'));
  const file = path.join(dir, 'archive.tar');
  await pipeline(Readable.from(stdin), createWriteStream(file, { mode: 0o600 }));
  return file;
}
