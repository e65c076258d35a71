/**
 * Docker's ExportChanges (DOCKER.md §1.6): a tar of the changes of a tree against its
 * parent, sorted by path. A deleted path becomes an empty regular file `dir/.wh.name`
 * (mode 0, owner 0, mtime now); an added or modified one becomes its normal entry with its
 * ownership, mode, mtime (whole seconds, as Docker truncates them), device numbers and
 * extended attributes; the second and later names of a hard-linked inode become hard links
 * to the first. No opaque markers are written. With no parent, every path of the tree is
 * an addition.
 *
 * Docker's exporter keeps only the security.capability xattr; this one keeps them all (its
 * unpacker, and ours, apply whatever SCHILY.xattr records a tar holds).
 */

import { type BigIntStats, closeSync, lstatSync, openSync, readlinkSync, readSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { ChangeKinds, type RawChange } from './changes.js';
import { BadArchiveError } from './errors.js';
import { fsOps } from './native.js';
import { fsPath, joinRaw } from './raw-name.js';
import { TarWriter, type WriteHeader, type WriteType } from './tar-writer.js';
import { whiteoutOf } from './whiteouts.js';

/** Writes the tar of `changes` (sorted, raw paths) of raw absolute `root` to `out`. */
export async function writeChanges(
  root: string,
  changes: readonly RawChange[],
  out: Writable,
): Promise<void> {
  const tar = new TarWriter(out);
  const seen = new Map<bigint, string>();
  for (const change of changes) {
    if (change.kind === ChangeKinds.delete) {
      await tar.entry(whiteoutHeader(change.path), []);
    } else {
      await writePath(tar, root, change.path, seen);
    }
  }
  await tar.end();
}

function whiteoutHeader(deleted: string): WriteHeader {
  const dir = path.posix.dirname(deleted);
  const name = joinRaw(dir, whiteoutOf(path.posix.basename(deleted))).slice(1);
  const mtime = Math.floor(Date.now() / 1000);
  return {
    name,
    type: 'file',
    mode: 0,
    uid: 0,
    gid: 0,
    size: 0,
    mtime,
    linkname: '',
    devmajor: 0,
    devminor: 0,
  };
}

async function writePath(
  tar: TarWriter,
  root: string,
  changed: string,
  seen: Map<bigint, string>,
): Promise<void> {
  const real = fsPath(joinRaw(root, changed.slice(1)));
  const stats = lstatSync(real, { bigint: true });
  if (stats.isSocket()) return; // a tar cannot hold a socket: left out, as GNU tar does
  const header = headerOf(changed.slice(1), stats);
  if (header.type === 'symlink') {
    header.linkname = readlinkSync(real, { encoding: 'buffer' }).toString('latin1');
  }
  if (header.type !== 'directory' && stats.nlink > 1n) {
    const first = seen.get(stats.ino);
    if (first === undefined) {
      seen.set(stats.ino, header.name);
    } else {
      Object.assign(header, { type: 'link', linkname: first, size: 0 });
    }
  }
  const xattrs: Array<[string, string]> = [];
  for (const name of fsOps().llistxattr(real)) {
    const value = fsOps().lgetxattr(real, name);
    if (value !== null)
      xattrs.push([`SCHILY.xattr.${name.toString('latin1')}`, value.toString('latin1')]);
  }
  const data =
    header.type === 'file' && header.size > 0 ? readChunks(real, header.size) : undefined;
  await tar.entry(header, xattrs, data);
}

/** Chunk size for reading files into a diff. */
const READ_CHUNK = 1024 * 1024;

/**
 * The bytes of file `real` of `size` bytes, chunk by chunk, with synchronous reads (this is
 * the worker); one byte more is asked for at the end, so that a file that grew is noticed.
 */
function* readChunks(real: Buffer, size: number): Generator<Buffer> {
  const fd = openSync(real, 'r');
  try {
    for (let done = 0; ; ) {
      const want = Math.min(READ_CHUNK, Math.max(1, size - done));
      const chunk = Buffer.allocUnsafe(want);
      const got = readSync(fd, chunk, 0, want, null);
      if (got === 0) return;
      done += got;
      yield chunk.subarray(0, got);
    }
  } finally {
    closeSync(fd);
  }
}

function headerOf(name: string, stats: BigIntStats): WriteHeader {
  const type = typeOf(stats, name);
  return {
    name: type === 'directory' ? `${name}/` : name,
    type,
    mode: Number(stats.mode & 0o7777n),
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    size: type === 'file' ? Number(stats.size) : 0,
    mtime: Number(stats.mtimeNs / 1_000_000_000n),
    linkname: '',
    devmajor: Number(((stats.rdev >> 8n) & 0xfffn) | ((stats.rdev >> 32n) & 0xfffff000n)),
    devminor: Number((stats.rdev & 0xffn) | ((stats.rdev >> 12n) & 0xffffff00n)),
  };
}

function typeOf(stats: BigIntStats, name: string): WriteType {
  if (stats.isDirectory()) return 'directory';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isCharacterDevice()) return 'character-device';
  if (stats.isBlockDevice()) return 'block-device';
  if (stats.isFIFO()) return 'fifo';
  if (stats.isFile()) return 'file';
  throw new BadArchiveError('this kind of file cannot go into a tar; remove it', { entry: name });
}
