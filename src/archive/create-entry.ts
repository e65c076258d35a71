/**
 * Creates one tar entry at a path inside the root that the caller has resolved and cleared,
 * then gives it the entry's ownership, xattrs, mode and times, in Docker's order
 * (createTarFile): lchown, lsetxattr (ENOTSUP and EPERM are only warnings, as not every
 * filesystem holds every namespace), chmod (never on a symbolic link; after chown, which
 * clears setuid bits), times (atime never before mtime). Directory times are the caller's
 * business: they are set once the whole layer is in.
 *
 * System calls are synchronous: this runs in the archive worker, a process of its own, where
 * a thread-pool round trip per call would only cost time.
 */

import {
  chmodSync,
  closeSync,
  constants,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { fsOps } from './native.js';
import { fsPath } from './raw-name.js';
import type { TarEntry, Timestamp } from './tar-entry.js';
import type { EntryData } from './tar-reader.js';

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;

/** Where an entry goes, and what it needs besides its header. */
export interface Target {
  /** Raw absolute path of the new entry. */
  path: string;
  /** For a hard link: the raw absolute path of the existing file. */
  linkTo?: string;
  /** Warnings collected for the whole layer (xattrs a filesystem refused). */
  warnings: string[];
}

/** Creates `entry` at `target.path` (which does not exist, unless both are directories). */
export async function createEntry(entry: TarEntry, target: Target, data: EntryData): Promise<void> {
  const path = fsPath(target.path);
  switch (entry.type) {
    case 'directory':
      if (!lstatSync(path, { throwIfNoEntry: false })?.isDirectory()) {
        mkdirSync(path, { mode: entry.mode });
      }
      break;
    case 'file':
      await writeFile(path, entry.mode, data);
      break;
    case 'symlink':
      symlinkSync(fsPath(entry.linkname), path);
      break;
    case 'link':
      linkSync(fsPath(target.linkTo as string), path);
      break;
    case 'character-device':
      fsOps().mknod(path, S_IFCHR | entry.mode, entry.devmajor, entry.devminor);
      break;
    case 'block-device':
      fsOps().mknod(path, S_IFBLK | entry.mode, entry.devmajor, entry.devminor);
      break;
    case 'fifo':
      fsOps().mknod(path, S_IFIFO | entry.mode, 0, 0);
      break;
  }
  setMetadata(entry, target);
}

async function writeFile(path: Buffer, mode: number, data: EntryData): Promise<void> {
  const flags = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW;
  const fd = openSync(path, flags, mode);
  try {
    for await (const chunk of data) {
      const bytes = chunk as Buffer;
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
    }
  } finally {
    closeSync(fd);
  }
}

function setMetadata(entry: TarEntry, target: Target): void {
  const path = fsPath(target.path);
  // A hard link to a symbolic link is a symbolic link: no chmod, no times (as Docker).
  const isLink =
    entry.type === 'symlink' || (entry.type === 'link' && lstatSync(path).isSymbolicLink());
  lchownSync(path, entry.uid, entry.gid);
  for (const [name, value] of entry.xattrs) {
    try {
      fsOps().lsetxattr(path, fsPath(name), value);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTSUP' && code !== 'EPERM') throw err;
      target.warnings.push(`${entry.name}: xattr ${name} not set (${code})`);
    }
  }
  if (isLink && entry.type !== 'symlink') return;
  if (!isLink) chmodSync(path, entry.mode);
  if (entry.type !== 'directory') setTimes(target.path, entry.atime, entry.mtime);
}

/** Sets atime and mtime of raw `path` without following a link; atime is at least mtime. */
export function setTimes(path: string, atime: Timestamp | undefined, mtime: Timestamp): void {
  const access = atime === undefined || before(atime, mtime) ? mtime : atime;
  fsOps().lutimes(fsPath(path), access.sec, access.nsec, mtime.sec, mtime.nsec);
}

function before(a: Timestamp, b: Timestamp): boolean {
  return a.sec < b.sec || (a.sec === b.sec && a.nsec < b.nsec);
}
