/**
 * Paths inside a layer root, resolved as if the root were a chroot: entry names are cleaned
 * lexically (like Go's filepath.Clean) and must stay inside; directories on the way are
 * looked up one component at a time with lstat, and a symbolic link met on the way is
 * followed inside the root (an absolute target starts again at the root). A link whose
 * target climbs above the root is refused, never clamped: nothing outside the root is ever
 * reached. The last component is never followed; the caller replaces or creates it.
 *
 * All names here are raw (see raw-name.ts).
 */

import { lstatSync, mkdirSync, readlinkSync } from 'node:fs';
import { BadArchiveError, UnsafeEntryError } from './errors.js';
import { fsPath, joinRaw } from './raw-name.js';

/** Linux's limit on symbolic links followed while resolving one path (MAXSYMLINKS). */
export const MAX_SYMLINK_HOPS = 40;

/**
 * The components of entry `name` after lexical cleaning ("./a//b/../c/" → ["a", "c"]; the
 * root itself → []). An absolute name, or one that climbs above the root, is refused with an
 * UnsafeEntryError naming `entry` (the name as written in the tar).
 */
export function splitEntryName(name: string, entry: string = name): string[] {
  if (name.startsWith('/')) throw new UnsafeEntryError(entry, 'is an absolute path');
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) throw new UnsafeEntryError(entry, "climbs out of the root with '..'");
      parts.pop();
      continue;
    }
    parts.push(part);
  }
  return parts;
}

/**
 * Whether a symbolic link at `linkDir` (components below the root) with target `target`
 * stays inside the root when resolved lexically, as Docker checks before creating one. An
 * absolute target is taken relative to the root and always stays inside.
 */
export function symlinkStaysInside(linkDir: readonly string[], target: string): boolean {
  if (target.startsWith('/')) return true;
  let depth = linkDir.length;
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    depth += part === '..' ? -1 : 1;
    if (depth < 0) return false;
  }
  return true;
}

/** What `resolveDir` does with a missing directory. */
export type MissingDir = 'create' | 'undefined';

/**
 * The raw absolute path of the directory that components `dirs` name under `root` (raw,
 * absolute, no trailing slash), following symbolic links inside the root. A missing
 * component is created with mode 0600 (Docker's MkdirAll(parent, 0600); the umask is 0)
 * or, with `missing = 'undefined'`, makes the result undefined. A component that is neither
 * a directory nor a link to one is a BadArchiveError; a link that leaves the root, or too
 * many links, an UnsafeEntryError; both name `entry`.
 */
export async function resolveDir(
  root: string,
  dirs: readonly string[],
  entry: string,
  missing: MissingDir,
): Promise<string | undefined> {
  const pending = [...dirs].reverse();
  const real: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.pop() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (real.length === 0) {
        throw new UnsafeEntryError(entry, 'goes through a symbolic link that leaves the root');
      }
      real.pop();
      continue;
    }
    const at = joinRaw(root, [...real, part].join('/'));
    const stats = lstatSync(fsPath(at), { throwIfNoEntry: false });
    if (stats === undefined) {
      if (missing === 'undefined') return undefined;
      mkdirSync(fsPath(at), { mode: 0o600 });
      real.push(part);
    } else if (stats.isDirectory()) {
      real.push(part);
    } else if (stats.isSymbolicLink()) {
      if (++hops > MAX_SYMLINK_HOPS) {
        throw new UnsafeEntryError(entry, 'goes through too many levels of symbolic links');
      }
      const target = readlinkSync(fsPath(at), { encoding: 'buffer' }).toString('latin1');
      if (target.startsWith('/')) real.length = 0;
      pending.push(...target.split('/').reverse());
    } else {
      const shown = [...real, part].join('/');
      throw new BadArchiveError(`'${shown}' is in the way: it is not a directory`, { entry });
    }
  }
  return real.length === 0 ? root : joinRaw(root, real.join('/'));
}

/** undefined for ENOENT (and ENOTDIR), the error otherwise. */
export function ignoreMissing(err: unknown): undefined {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
  throw err;
}
