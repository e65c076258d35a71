/**
 * Applies a layer tar to a directory, as Docker's UnpackLayer does (DOCKER.md §1.6), with
 * the root treated as a chroot (root-path.ts). Runs in the archive worker, never in the
 * daemon. For each entry, in tar order:
 *
 *   - its header size is added to the result (PAX and long-name headers are not entries);
 *   - names starting `.wh..wh.` are AUFS metadata and skipped, except that regular files
 *     in `.wh..wh.plnk/` are staged as targets for hard links that point there;
 *   - `dir/.wh..wh..opq` removes everything in `dir` that this tar has not unpacked;
 *   - `dir/.wh.name` removes `dir/name` and everything below it;
 *   - anything else replaces what is at its path (a directory over a directory is merged:
 *     only its metadata changes) and gets its ownership, xattrs, mode and times;
 *   - a missing parent directory is created with mode 0600.
 *
 * Directory times are set at the end, once nothing more is created in them. The caller
 * applies into a fresh root and discards it on failure: an error leaves the root half
 * applied, but nothing outside it is ever touched.
 */

import { createReadStream, lstatSync } from 'node:fs';
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { NotFoundError } from '../util/index.js';
import { createEntry, setTimes } from './create-entry.js';
import { BadArchiveError, UnsafeEntryError } from './errors.js';
import { fsPath, joinRaw, rawOf } from './raw-name.js';
import { listDir, removeTree } from './remove-tree.js';
import { resolveDir, splitEntryName, symlinkStaysInside } from './root-path.js';
import type { TarEntry } from './tar-entry.js';
import { type EntryData, readTar } from './tar-reader.js';
import {
  classifyName,
  WHITEOUT_LINK_DIR,
  WHITEOUT_META_PREFIX,
  WHITEOUT_OPAQUE,
} from './whiteouts.js';

export interface ApplyResult {
  /** The summed sizes of the entries' headers: the layer's size, as Docker counts it. */
  size: number;
  /** Things the filesystem could not hold (xattr namespaces), one line each. */
  warnings: string[];
}

/** The state of one apply. */
interface Apply {
  root: string;
  size: number;
  warnings: string[];
  /** Raw paths this tar created or merged, which an opaque marker keeps. */
  unpacked: Set<string>;
  /** Directories whose times are set at the end, with their entry. */
  dirs: Array<{ path: string; entry: TarEntry }>;
  /** Staging directory for `.wh..wh.plnk/` files, made on first use. */
  staging: string | undefined;
  staged: Map<string, TarEntry>;
  /**
   * Resolved parent directories by their entry components ("usr/lib"), so that each
   * directory is looked up once. Cleared whenever this apply removes anything or makes a
   * symbolic link, the only changes that can alter a resolution.
   */
  resolved: Map<string, string>;
}

/** Resolved directories kept at most (a layer with more starts afresh). */
const DIR_CACHE_MAX = 10_000;

/** Applies the tar read from `input` (uncompressed or gzip) to directory `rootText`. */
export async function applyTar(rootText: string, input: Readable): Promise<ApplyResult> {
  const root = rawOf(path.resolve(rootText));
  await requireDirectory(rootText);
  const state: Apply = {
    root,
    size: 0,
    warnings: [],
    unpacked: new Set(),
    dirs: [],
    staging: undefined,
    staged: new Map(),
    resolved: new Map(),
  };
  try {
    await readTar(input, (entry, data) => applyEntry(state, entry, data));
    for (const dir of state.dirs) setTimes(dir.path, dir.entry.atime, dir.entry.mtime);
  } finally {
    if (state.staging !== undefined) await rm(state.staging, { recursive: true, force: true });
  }
  return { size: state.size, warnings: state.warnings };
}

async function requireDirectory(root: string): Promise<void> {
  const stats = await lstat(root).catch(() => undefined);
  if (!stats?.isDirectory()) {
    throw new NotFoundError(`layer root ${root} is not a directory`, {
      hint: 'create the directory (or mount the layer) first',
    });
  }
}

async function applyEntry(state: Apply, entry: TarEntry, data: EntryData): Promise<void> {
  state.size += entry.size;
  const parts = splitEntryName(entry.name);
  if (parts.length === 0) return applyToRoot(state, entry, data);
  const rootOpaque = parts.length === 1 && parts[0] === WHITEOUT_OPAQUE;
  if ((parts[0] as string).startsWith(WHITEOUT_META_PREFIX) && !rootOpaque) {
    return stageMeta(state, parts, entry, data);
  }
  const base = parts[parts.length - 1] as string;
  const kind = classifyName(base);
  if (kind.kind === 'meta') return; // AUFS metadata below the top level: nothing to unpack
  const dir = await parentDir(state, parts, entry);
  if (kind.kind === 'opaque') {
    state.resolved.clear();
    return removeNotUnpacked(state, dir);
  }
  if (kind.kind === 'whiteout') {
    if (kind.target === '' || kind.target === '.' || kind.target === '..') {
      throw new UnsafeEntryError(entry.name, `is a whiteout of '${kind.target}'`);
    }
    state.resolved.clear();
    return removeTree(joinRaw(dir, kind.target));
  }
  await replaceWith(state, joinRaw(dir, base), parts, entry, data);
}

/** The resolved directory that holds entry `parts`, creating missing ones (cached). */
async function parentDir(state: Apply, parts: string[], entry: TarEntry): Promise<string> {
  const key = parts.slice(0, -1).join('/');
  let dir = state.resolved.get(key);
  if (dir === undefined) {
    dir = (await resolveDir(state.root, parts.slice(0, -1), entry.name, 'create')) as string;
    if (state.resolved.size >= DIR_CACHE_MAX) state.resolved.clear();
    state.resolved.set(key, dir);
  }
  return dir;
}

/** A "." directory entry: the root's own metadata. Anything else there is refused. */
async function applyToRoot(state: Apply, entry: TarEntry, data: EntryData): Promise<void> {
  if (entry.type !== 'directory') {
    throw new UnsafeEntryError(entry.name, `would replace the root with a ${entry.type}`);
  }
  await createEntry(entry, { path: state.root, warnings: state.warnings }, data);
  state.dirs.push({ path: state.root, entry });
}

async function replaceWith(
  state: Apply,
  at: string,
  parts: string[],
  entry: TarEntry,
  data: EntryData,
): Promise<void> {
  const linkTo = entry.type === 'link' ? await hardLinkTarget(state, entry) : undefined;
  if (entry.type === 'symlink' && !symlinkStaysInside(parts.slice(0, -1), entry.linkname)) {
    throw new UnsafeEntryError(
      entry.name,
      `is a symbolic link to '${entry.linkname}', outside the root`,
    );
  }
  const existing = lstatSync(fsPath(at), { throwIfNoEntry: false });
  if (existing !== undefined && !(existing.isDirectory() && entry.type === 'directory')) {
    state.resolved.clear();
    await removeTree(at);
  }
  if (entry.type === 'symlink') state.resolved.clear();
  if (linkTo !== undefined && 'staged' in linkTo) {
    // A link into .wh..wh.plnk/ becomes a copy of the staged file, with its header.
    const source = createReadStream(fsPath(linkTo.staged));
    await createEntry(linkTo.entry, { path: at, warnings: state.warnings }, source);
  } else {
    await createEntry(entry, { path: at, linkTo: linkTo?.path, warnings: state.warnings }, data);
  }
  if (entry.type === 'directory') state.dirs.push({ path: at, entry });
  state.unpacked.add(at);
}

type LinkTarget = { path: string } | { staged: string; entry: TarEntry };

/** Where a hard link entry points: an existing non-directory inside the root. */
async function hardLinkTarget(state: Apply, entry: TarEntry): Promise<LinkTarget> {
  const outside = () =>
    new UnsafeEntryError(entry.name, `is a hard link to '${entry.linkname}', outside the root`);
  let parts: string[];
  try {
    parts = splitEntryName(entry.linkname, entry.name);
  } catch {
    throw outside();
  }
  if (parts[0] === WHITEOUT_LINK_DIR && parts.length === 2) {
    const staged = state.staged.get(parts[1] as string);
    if (staged === undefined || state.staging === undefined) {
      throw new BadArchiveError(`hard link to '${entry.linkname}', which the tar does not hold`, {
        entry: entry.name,
      });
    }
    return { staged: joinRaw(rawOf(state.staging), parts[1] as string), entry: staged };
  }
  const missing = () =>
    new BadArchiveError(`hard link to '${entry.linkname}', which does not exist`, {
      entry: entry.name,
    });
  if (parts.length === 0) throw missing();
  const dir = await resolveDir(state.root, parts.slice(0, -1), entry.name, 'undefined');
  if (dir === undefined) throw missing();
  const target = joinRaw(dir, parts[parts.length - 1] as string);
  const stats = lstatSync(fsPath(target), { throwIfNoEntry: false });
  if (stats === undefined) throw missing();
  if (stats.isDirectory()) {
    throw new BadArchiveError(`hard link to directory '${entry.linkname}'`, { entry: entry.name });
  }
  return { path: target };
}

/** `.wh..wh.*` at the top: regular files in `.wh..wh.plnk/` are kept aside as link targets. */
async function stageMeta(
  state: Apply,
  parts: string[],
  entry: TarEntry,
  data: EntryData,
): Promise<void> {
  if (parts[0] !== WHITEOUT_LINK_DIR || parts.length !== 2 || entry.type !== 'file') return;
  state.staging ??= await mkdtemp(path.join(os.tmpdir(), 'thinp-plnk-'));
  const base = parts[1] as string;
  const staged = joinRaw(rawOf(state.staging), base);
  await removeTree(staged);
  const { xattrs: _, ...plain } = entry;
  await createEntry({ ...plain, xattrs: [], uid: 0, gid: 0 }, { path: staged, warnings: [] }, data);
  state.staged.set(base, entry);
}

/** The opaque marker: removes each entry of `dir`, recursively, that this tar did not unpack. */
async function removeNotUnpacked(state: Apply, dir: string): Promise<void> {
  const names = await listDir(dir).catch(() => []);
  for (const name of names) {
    const at = joinRaw(dir, name);
    if (!state.unpacked.has(at)) {
      await removeTree(at);
    } else if (lstatSync(fsPath(at)).isDirectory()) {
      await removeNotUnpacked(state, at);
    }
  }
}
