/**
 * `thinp rescue docker list|export|save|import`: the images and containers of a legacy Docker
 * devicemapper root, read-only (rescue/). Each command opens the root, does its one thing
 * and closes it (unmounting whatever it mounted), also when it fails; a damaged root is
 * read through a repaired copy of its metadata, and what was lost goes to stderr.
 */

import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import {
  describeLoss,
  exportFilesystem,
  importRoot,
  listRoot,
  locateRoot,
  type RescueListing,
  RescueSession,
  saveImage,
} from '../../rescue/index.js';
import { type Bytes, formatHumanSize, UsageError } from '../../util/index.js';
import { formatTable, writeJson } from '../context.js';
import type { CliIo } from '../io.js';

const DEFAULT_DOCKER_ROOT = '/var/lib/docker';

interface RootOptions {
  dockerRoot?: string;
  data?: string;
  metadata?: string;
  workDir?: string;
}

const human = (n: number) => formatHumanSize(n as Bytes);
const short = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);

export function addRescueCommands(program: Command, io: CliIo): void {
  const docker = program
    .command('rescue')
    .description('get images and containers out of other storage, read-only')
    .command('docker')
    .description("a legacy Docker devicemapper root (Docker's removed driver), read-only")
    .option('--docker-root <dir>', `the Docker root (default ${DEFAULT_DOCKER_ROOT})`)
    .option('--data <dev>', 'the pool data device of a direct-lvm root (opened read-only)')
    .option('--metadata <dev>', 'the pool metadata device of a direct-lvm root (read-only)')
    .option('--work-dir <dir>', 'where mounts and repaired metadata go (default: the temp dir)')
    .addHelpText(
      'after',
      `
Nothing of the root is written: the pool is opened read-only, damaged metadata is repaired
into a temporary copy (what was lost goes to stderr), and filesystems are mounted read-only
through thinp's NBD mount path (ext4 with noload, xfs with norecovery).

Examples:
  thinp rescue docker list --json
  thinp rescue docker export web -o web.tar
  thinp rescue docker save alpine:3.12 -o alpine.tar && docker load -i alpine.tar
  thinp rescue docker --data /dev/vg/thinpool_tdata --metadata /dev/vg/thinpool_tmeta list
  thinp --root /var/lib/thinp rescue docker import`,
    );
  docker
    .command('list')
    .description(
      'images (tags, layer chain ids) and containers (names), with the bytes their devices map',
    )
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }, self: Command) => {
      const listing = await withSession(self, io, (s) => listRoot(s));
      if (o.json === true) writeJson(io, listing);
      else io.stdout.write(formatListing(listing));
    });
  docker
    .command('export')
    .description("a container's or image's filesystem as a tar")
    .argument('<ref>', 'a container name or id, an image tag or id, or a unique id prefix')
    .requiredOption('-o, --output <file>', 'the tar to write')
    .action(async (ref: string, o: { output: string }, self: Command) => {
      await withOutput(io, o.output, (out) =>
        withSession(self, io, (s) => exportFilesystem(s, ref, out)),
      );
      io.stdout.write(`Exported: ${ref} to ${o.output}\n`);
    });
  docker
    .command('save')
    .description('an image as a docker save tarball (docker load reads it)')
    .argument('<ref>', 'an image tag or id, or a unique id prefix')
    .requiredOption('-o, --output <file>', 'the tarball to write')
    .action(async (ref: string, o: { output: string }, self: Command) => {
      const saved = await withOutput(io, o.output, (out) =>
        withSession(self, io, (s) => saveImage(s, ref, out)),
      );
      io.stdout.write(`Saved: ${ref} as ${saved.config.digest} to ${o.output}\n`);
    });
  addImport(docker, io);
}

function addImport(docker: Command, io: CliIo): void {
  docker
    .command('import')
    .description(
      'the whole root into a new thinp root (--root): images, containers and devices, data copied',
    )
    .option(
      '--share',
      "hard-link the data file instead of copying it (stop Docker's use of it first)",
    )
    .option('--json', 'machine-readable summary')
    .action(async (o: { share?: boolean; json?: boolean }, self: Command) => {
      const given = self.optsWithGlobals<{ root?: string }>().root ?? io.env.THINP_ROOT;
      if (given === undefined || given === '') {
        throw new UsageError(
          "'thinp rescue docker import' needs --root THINP_ROOT (or $THINP_ROOT)",
          {
            hint: 'give a new or empty directory for the thinp root',
          },
        );
      }
      const target = path.resolve(io.cwd, given);
      await mkdir(target, { recursive: true, mode: 0o700 });
      const summary = await withSession(self, io, (s) =>
        importRoot(s, target, { share: o.share === true }),
      );
      if (o.json === true) writeJson(io, summary);
      else {
        for (const why of summary.skipped) io.stderr.write(`thinp: left out ${why}\n`);
        io.stdout.write(
          `Imported ${summary.images.length} images, ${summary.containers.length} containers ` +
            `and ${Object.keys(summary.devices).length} devices into ${target}` +
            `${summary.dataShared ? ' (data file shared)' : ''}\n`,
        );
      }
    });
}

/** Opens the root the options name, runs `fn`, closes it. */
async function withSession<T>(
  self: Command,
  io: CliIo,
  fn: (s: RescueSession) => Promise<T>,
): Promise<T> {
  const o = self.optsWithGlobals<RootOptions>();
  const at = (p: string | undefined) => (p === undefined ? undefined : path.resolve(io.cwd, p));
  const paths = await locateRoot(at(o.dockerRoot) ?? DEFAULT_DOCKER_ROOT, {
    data: at(o.data),
    metadata: at(o.metadata),
  });
  const session = await RescueSession.open(paths, at(o.workDir));
  for (const dir of session.cleaned) {
    io.stderr.write(
      `thinp: removed the mounts and work directory ${dir} of a rescue that was cut short\n`,
    );
  }
  for (const line of [...session.notes, ...describeLoss(session)]) {
    io.stderr.write(`thinp: ${line}\n`);
  }
  // Interrupted: unmount what this rescue mounted before exiting (a rescue killed outright
  // leaves its work directory, which the next one cleans).
  const interrupted = (signal: NodeJS.Signals) => {
    void session.close().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    return await fn(session);
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await session.close();
  }
}

/** Writes to `file` through a partial file renamed into place only on success. */
async function withOutput<T>(
  io: CliIo,
  file: string,
  fn: (out: Writable) => Promise<T>,
): Promise<T> {
  const output = path.resolve(io.cwd, file);
  const temp = `${output}.thinp-partial`;
  try {
    const result = await fn(createWriteStream(temp, { mode: 0o644 }));
    await rename(temp, output);
    return result;
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

function formatListing(l: RescueListing): string {
  const images = [
    ['IMAGE ID', 'TAGS', 'LAYERS', 'SIZE'],
    ...l.images.map((i) => [
      short(i.id),
      i.tags.join(',') || '<none>',
      `${i.layers.length}`,
      human(i.size),
    ]),
  ];
  const containers = [
    ['CONTAINER ID', 'NAME', 'IMAGE', 'SIZE'],
    ...l.containers.map((c) => [short(c.id), c.name, short(c.image), human(c.size)]),
  ];
  return `${formatTable(images)}\n${formatTable(containers)}`;
}
