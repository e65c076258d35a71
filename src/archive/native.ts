/**
 * The archive addon (native/fs-ops.c, built by node-gyp into build/Release/thinp_fs.node):
 * mknod, extended attributes and nanosecond lutimes, which Node's fs lacks. Its calls are
 * synchronous and only the archive worker (a child process) makes them. Paths and names are
 * Buffers: file names are bytes. Each failure throws an errno error (`code`, `errno`,
 * `syscall`), like Node's fs.
 *
 * Loading is lazy and throws `UnavailableError` naming the file and the fix when the addon
 * is missing, so that importing the archive layer never fails.
 */

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { UnavailableError } from '../util/index.js';

export interface FsOps {
  /** mknod(2); `mode` holds the type (S_IFCHR, S_IFBLK, S_IFIFO) and the permission bits. */
  mknod(path: Buffer, mode: number, major: number, minor: number): void;
  /** lsetxattr(2), creating or replacing the attribute. */
  lsetxattr(path: Buffer, name: Buffer, value: Buffer): void;
  /** lgetxattr(2); null when the file has no such attribute. */
  lgetxattr(path: Buffer, name: Buffer): Buffer | null;
  /** llistxattr(2): the names of every attribute the caller may see. */
  llistxattr(path: Buffer): Buffer[];
  /** utimensat(2) with AT_SYMLINK_NOFOLLOW: exact seconds and nanoseconds. */
  lutimes(
    path: Buffer,
    atimeSec: number,
    atimeNsec: number,
    mtimeSec: number,
    mtimeNsec: number,
  ): void;
}

// src/archive/native.ts under tsx and dist/archive/native.js after the build both sit two
// levels below the package root.
const addonPath = fileURLToPath(new URL('../../build/Release/thinp_fs.node', import.meta.url));

const FUNCTIONS = ['mknod', 'lsetxattr', 'lgetxattr', 'llistxattr', 'lutimes'] as const;

let loaded: FsOps | undefined;

/** The addon's functions; throws UnavailableError when it cannot be loaded. */
export function fsOps(): FsOps {
  if (loaded !== undefined) return loaded;
  let binding: unknown;
  try {
    binding = createRequire(import.meta.url)(addonPath);
  } catch (err) {
    throw unavailable(
      `cannot load ${addonPath}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const missing = FUNCTIONS.filter(
    (name) => typeof (binding as Record<string, unknown> | null)?.[name] !== 'function',
  );
  if (missing.length > 0) throw unavailable(`${addonPath} lacks ${missing.join(', ')}`);
  loaded = binding as FsOps;
  return loaded;
}

function unavailable(reason: string): UnavailableError {
  return new UnavailableError(`the archive addon is not available (${reason})`, {
    hint: "build it with 'npm install' (node-gyp, needs the Debian package build-essential)",
  });
}
