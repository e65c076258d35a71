/**
 * Docker's ExportChanges (DOCKER.md §1.6): a tar of the changes of a tree against its
 * parent, sorted by path. A deleted path becomes an empty regular file `dir/.wh.name`
 * (mode 0, owner 0, mtime now); an added or modified one becomes its normal entry with its
 * ownership, mode, mtime (whole seconds, as Docker truncates them), rdev and every xattr;
 * the second and later names of a hard-linked inode become hard links to the first. No
 * opaque markers are written. With no parent, every path of the tree is an addition.
 *
 * Long or non-ASCII names, big ids and xattrs go into a PAX header before the entry.
 */

import { once } from 'node:events';
import type { BigIntStats } from 'node:fs';
import { createReadStream } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { type Header, type Pack, pack } from 'tar-stream';
import { ChangeKinds, type RawChange } from './changes.js';
import { fsOps } from './native.js';
import { fitsUstar, paxBody, standInName, USTAR_ID_MAX, USTAR_TIME_MAX } from './pax.js';
import { fsPath, joinRaw } from './raw-name.js';
import { whiteoutOf } from './whiteouts.js';

/** A header as tar-stream writes it; `type` may also be 'pax-header'. */
type EntryHeader = Partial<Omit<Header, 'type'>> & {
  name: string;
  type: Header['type'] | 'pax-header';
};

/** Writes the tar of `changes` (sorted, raw paths) of raw absolute `root` to `out`. */
export async function writeChanges(
  root: string,
  changes: readonly RawChange[],
  out: Writable,
): Promise<void> {
  const tar = pack();
  tar.pipe(out);
  const seen = new Map<bigint, string>();
  for (const change of changes) {
    if (change.kind === ChangeKinds.delete) {
      await writeWhiteout(tar, change.path);
    } else {
      await writePath(tar, root, change.path, seen);
    }
  }
  tar.finalize();
  await finished(out, { cleanup: true }).catch((err) => {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw err;
  });
}

async function writeWhiteout(tar: Pack, changed: string): Promise<void> {
  const dir = path.posix.dirname(changed);
  const name = joinRaw(dir, whiteoutOf(path.posix.basename(changed))).slice(1);
  const now = new Date(Math.floor(Date.now() / 1000) * 1000);
  await writeEntry(
    tar,
    { name, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: now },
    [],
    undefined,
  );
}

async function writePath(
  tar: Pack,
  root: string,
  changed: string,
  seen: Map<bigint, string>,
): Promise<void> {
  const real = joinRaw(root, changed.slice(1));
  const stats = await lstat(fsPath(real), { bigint: true });
  const name = stats.isDirectory() ? `${changed.slice(1)}/` : changed.slice(1);
  const header = headerOf(name, stats);
  const pax: Array<[string, string]> = [];
  if (stats.isSymbolicLink()) {
    header.linkname = (await readlink(fsPath(real), { encoding: 'buffer' })).toString('latin1');
  }
  const first = !stats.isDirectory() && stats.nlink > 1n ? seen.get(stats.ino) : undefined;
  if (first !== undefined) {
    Object.assign(header, { type: 'link', linkname: first, size: 0 });
  } else if (!stats.isDirectory() && stats.nlink > 1n) {
    seen.set(stats.ino, name);
  }
  for (const xattr of fsOps().llistxattr(fsPath(real))) {
    const value = fsOps().lgetxattr(fsPath(real), xattr);
    if (value !== null)
      pax.push([`SCHILY.xattr.${xattr.toString('latin1')}`, value.toString('latin1')]);
  }
  const data = header.type === 'file' && (header.size ?? 0) > 0 ? real : undefined;
  await writeEntry(tar, header, pax, data);
}

function headerOf(name: string, stats: BigIntStats): EntryHeader {
  const mtime = Number(stats.mtimeNs / 1_000_000_000n);
  return {
    name,
    type: typeOf(stats),
    mode: Number(stats.mode & 0o7777n),
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    size: stats.isFile() ? Number(stats.size) : 0,
    mtime: new Date(mtime * 1000),
    devmajor: Number(((stats.rdev >> 8n) & 0xfffn) | ((stats.rdev >> 32n) & 0xfffff000n)),
    devminor: Number((stats.rdev & 0xffn) | ((stats.rdev >> 12n) & 0xffffff00n)),
  };
}

function typeOf(stats: BigIntStats): Header['type'] {
  if (stats.isDirectory()) return 'directory';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isCharacterDevice()) return 'character-device';
  if (stats.isBlockDevice()) return 'block-device';
  if (stats.isFIFO()) return 'fifo';
  if (stats.isFile()) return 'file';
  throw new Error(`cannot archive a socket or unknown file type`);
}

/** Writes `header` (raw names), preceded by a PAX header when needed, then `data`'s bytes. */
async function writeEntry(
  tar: Pack,
  header: EntryHeader,
  extra: Array<[string, string]>,
  data: string | undefined,
): Promise<void> {
  const pax = [...paxOverflow(header), ...extra];
  if (pax.length > 0) {
    const body = paxBody(pax);
    const paxName = standInName(`PaxEntryHeader.0/${path.posix.basename(header.name)}`);
    await entry(tar, { name: paxName, type: 'pax-header', mode: 0o644, mtime: header.mtime }, body);
  }
  if (data === undefined) {
    await entry(tar, header, Buffer.alloc(0));
    return;
  }
  const { promise: done, resolve, reject } = deferred();
  const sink = tar.entry(header as Header, (err) => (err ? reject(err) : resolve()));
  for await (const chunk of createReadStream(fsPath(data))) {
    if (!sink.write(chunk as Buffer)) await once(sink as unknown as NodeJS.EventEmitter, 'drain');
  }
  sink.end(undefined);
  await done;
}

/** PAX records for what the ustar header cannot hold; fixes the header's fields to fit. */
function paxOverflow(header: EntryHeader): Array<[string, string]> {
  const records: Array<[string, string]> = [];
  if (!fitsUstar(header.name, true)) {
    records.push(['path', header.name]);
    header.name = standInName(header.name);
  }
  if (header.linkname && !fitsUstar(header.linkname, false)) {
    records.push(['linkpath', header.linkname]);
    header.linkname = standInName(header.linkname);
  }
  for (const key of ['uid', 'gid'] as const) {
    if ((header[key] ?? 0) > USTAR_ID_MAX) {
      records.push([key, String(header[key])]);
      header[key] = 0;
    }
  }
  const seconds = (header.mtime?.getTime() ?? 0) / 1000;
  if (seconds > USTAR_TIME_MAX || seconds < 0) {
    records.push(['mtime', String(seconds)]);
    header.mtime = new Date(0);
  }
  return records;
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  let resolve: () => void = () => undefined;
  let reject: (err: Error) => void = () => undefined;
  const promise = new Promise<void>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

function entry(tar: Pack, header: EntryHeader, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    tar.entry(header as Header, body, (err) => (err ? reject(err) : resolve()));
  });
}
