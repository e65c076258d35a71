/**
 * A directory tree captured as plain data, to compare a tree with a reference tree: a
 * mounted layer with the same tars applied to a plain directory, an applied diff with the
 * tree it came from, our unpack with GNU tar's.
 *
 *     const got = await snapshotTree(mounted);
 *     const want = await snapshotTree(reference);
 *     assertSameTree(got, want);                   // lists every difference on failure
 *
 * For each path below the root (the root itself is "/", included unless `root: false`):
 * type, permission bits (07777), uid, gid, size and sha256 of regular files, symlink target,
 * device numbers, every xattr (hex values), mtime, and for a hard-linked file the other
 * paths of its inode within the tree. Names are read as bytes and shown as UTF-8 (invalid
 * sequences escaped as \xNN), so that two different names never collapse into one. Symbolic
 * links are never followed. Xattrs are read through the archive addon (build/Release/thinp_fs).
 *
 * Options choose what to leave out, because trees that are "the same" legitimately differ
 * there: `mtime: 'seconds'` (a tar carries whole seconds), `'none'`, `dirMtimes: false`
 * (a directory's mtime changes whenever an entry inside it does), `ignore` (e.g. lost+found).
 */

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { fsOps } from '../../src/archive/native.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface TreeEntry {
  type: EntryType;
  /** Permission bits with setuid, setgid and sticky (07777); 0o777 for symlinks. */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files: bytes; 0 otherwise. */
  size: number;
  /** Regular files: hex sha256 of the content. */
  sha256?: string;
  /** Symbolic links: the target as text. */
  target?: string;
  /** Character and block devices. */
  rdev?: { major: number; minor: number };
  /** Every extended attribute, name → hex value (sorted by name). */
  xattrs: Record<string, string>;
  /** Modification time: "sec.nnnnnnnnn", "sec" or absent, per the options. */
  mtime?: string;
  /** Hard-linked non-directories: the other paths of the same inode in this tree, sorted. */
  links?: string[];
}

/** Path ("/", "/etc", "/etc/passwd") → entry, in byte order of the paths. */
export type TreeSnapshot = Map<string, TreeEntry>;

export interface SnapshotOptions {
  /** 'ns' (default), 'seconds' (truncated), or 'none'. */
  mtime?: 'ns' | 'seconds' | 'none';
  /** Whether directory mtimes are captured (default true). */
  dirMtimes?: boolean;
  /** Whether the root "/" itself is an entry (default true). */
  root?: boolean;
  /** Whether xattrs are captured (default true). */
  xattrs?: boolean;
  /** Paths to leave out, with everything below them (e.g. p => p === '/lost+found'). */
  ignore?: (path: string) => boolean;
}

/** Captures the tree under `root`. */
export async function snapshotTree(
  root: string,
  options: SnapshotOptions = {},
): Promise<TreeSnapshot> {
  const found: Array<[string, TreeEntry, bigint | undefined]> = [];
  await visit(Buffer.from(root), '/', options, found);
  const byInode = new Map<bigint, string[]>();
  for (const [path, , inode] of found) {
    if (inode !== undefined) byInode.set(inode, [...(byInode.get(inode) ?? []), path]);
  }
  const snapshot: TreeSnapshot = new Map();
  for (const [path, entry, inode] of found) {
    const others = inode === undefined ? [] : (byInode.get(inode) ?? []).filter((p) => p !== path);
    snapshot.set(path, others.length > 0 ? { ...entry, links: others.sort() } : entry);
  }
  return snapshot;
}

async function visit(
  real: Buffer,
  path: string,
  options: SnapshotOptions,
  out: Array<[string, TreeEntry, bigint | undefined]>,
): Promise<void> {
  if (options.ignore?.(path) === true) return;
  const stats = await lstat(real, { bigint: true });
  const entry = await describe(real, stats, options);
  const hardLinked = entry.type !== 'dir' && stats.nlink > 1n;
  if (path !== '/' || options.root !== false)
    out.push([path, entry, hardLinked ? stats.ino : undefined]);
  if (entry.type !== 'dir') return;
  const names = (await readdir(real, { encoding: 'buffer' })).sort(Buffer.compare);
  for (const name of names) {
    const child = Buffer.concat([real, Buffer.from('/'), name]);
    await visit(child, `${path === '/' ? '' : path}/${showName(name)}`, options, out);
  }
}

async function describe(
  real: Buffer,
  stats: import('node:fs').BigIntStats,
  options: SnapshotOptions,
): Promise<TreeEntry> {
  const type = typeOf(stats);
  const entry: TreeEntry = {
    type,
    mode: Number(stats.mode & 0o7777n),
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    size: type === 'file' ? Number(stats.size) : 0,
    xattrs: options.xattrs === false ? {} : readXattrs(real),
  };
  if (type === 'file') entry.sha256 = await sha256(real);
  if (type === 'symlink') entry.target = showName(await readlink(real, { encoding: 'buffer' }));
  if (type === 'char' || type === 'block') entry.rdev = splitDev(stats.rdev);
  const mtime = options.mtime ?? 'ns';
  if (mtime !== 'none' && (type !== 'dir' || options.dirMtimes !== false)) {
    const sec = stats.mtimeNs / 1_000_000_000n;
    const nsec = String(stats.mtimeNs % 1_000_000_000n).padStart(9, '0');
    entry.mtime = mtime === 'seconds' ? String(sec) : `${sec}.${nsec}`;
  }
  return entry;
}

function typeOf(stats: import('node:fs').BigIntStats): EntryType {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'dir';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isCharacterDevice()) return 'char';
  if (stats.isBlockDevice()) return 'block';
  if (stats.isFIFO()) return 'fifo';
  return 'socket';
}

/** Linux's dev_t split (glibc's major/minor). */
export function splitDev(rdev: bigint): { major: number; minor: number } {
  return {
    major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n)),
    minor: Number((rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n)),
  };
}

function readXattrs(real: Buffer): Record<string, string> {
  const ops = fsOps();
  const names = ops
    .llistxattr(real)
    .map((name) => name.toString('latin1'))
    .sort();
  const xattrs: Record<string, string> = {};
  for (const name of names) {
    const value = ops.lgetxattr(real, Buffer.from(name, 'latin1'));
    if (value !== null) xattrs[name] = value.toString('hex');
  }
  return xattrs;
}

async function sha256(real: Buffer): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(real)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A name's bytes as UTF-8 text, with invalid bytes (and backslashes) escaped. */
export function showName(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(bytes) && !text.includes('\\')) return text;
  let shown = '';
  for (const byte of bytes) {
    shown +=
      byte >= 0x20 && byte < 0x7f && byte !== 0x5c
        ? String.fromCharCode(byte)
        : `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return shown;
}

/** Every difference between two snapshots, one line each ("/a: mode 644 ≠ 600"). */
export function compareTrees(actual: TreeSnapshot, expected: TreeSnapshot): string[] {
  const problems: string[] = [];
  for (const [path, want] of expected) {
    const got = actual.get(path);
    if (got === undefined) {
      problems.push(`${path}: missing (expected a ${want.type})`);
      continue;
    }
    for (const key of new Set([...Object.keys(want), ...Object.keys(got)]) as Set<
      keyof TreeEntry
    >) {
      const [a, b] = [JSON.stringify(got[key]), JSON.stringify(want[key])];
      if (a !== b)
        problems.push(`${path}: ${key} ${show(key, got[key])} ≠ expected ${show(key, want[key])}`);
    }
  }
  for (const [path, got] of actual) {
    if (!expected.has(path)) problems.push(`${path}: unexpected ${got.type}`);
  }
  return problems;
}

function show(key: keyof TreeEntry, value: unknown): string {
  if (key === 'mode' && typeof value === 'number') return `0${value.toString(8)}`;
  return value === undefined ? 'none' : JSON.stringify(value);
}

/** Throws an Error listing every difference (at most 50) when the snapshots differ. */
export function assertSameTree(actual: TreeSnapshot, expected: TreeSnapshot, what = 'tree'): void {
  const problems = compareTrees(actual, expected);
  if (problems.length === 0) return;
  const shown = problems.slice(0, 50).join('\n  ');
  const more = problems.length > 50 ? `\n  ... and ${problems.length - 50} more` : '';
  throw new Error(
    `${what} differs from the reference in ${problems.length} ways:\n  ${shown}${more}`,
  );
}
