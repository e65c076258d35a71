/**
 * The files the metadata tools work on: which metadata file a command means, the XML input
 * of a restore, and replacing a file only once its new contents are complete and durable.
 */

import { constants } from 'node:fs';
import { type FileHandle, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../../config/index.js';
import { IoError, NotFoundError, pathExists, UnavailableError } from '../../util/index.js';

export const POOL_HINT = "create the pool with 'thinp pool create' or give --metadata FILE";

/** The metadata file a command works on: --metadata FILE, else the pool's loop file. */
export function metadataTarget(config: Config, given: string | undefined, cwd: string): string {
  if (given !== undefined) return path.resolve(cwd, given);
  const backing = config.backing;
  if (backing.kind === 'loop') return backing.metadataFile;
  const where =
    backing.kind === 'devices'
      ? `the device ${backing.metadataDevice} (dm.metadatadev)`
      : backing.kind === 'existing-pool'
        ? `the existing pool ${backing.poolName} (dm.thinpooldev)`
        : `the device ${backing.device} (dm.directlvm_device)`;
  throw new UnavailableError(
    `the pool's metadata is on ${where}, and the metadata tools work on files only`,
    { hint: 'copy the metadata into a file and give --metadata FILE' },
  );
}

/** Fails with the path and the fix unless the metadata file `file` exists. */
export async function requireMetadataFile(file: string, given: boolean): Promise<void> {
  if (await pathExists(file)) return;
  throw new NotFoundError(
    given ? `no metadata file at ${file}` : `the pool has no metadata file at ${file}`,
    { hint: given ? 'check the path given with --metadata' : POOL_HINT },
  );
}

/**
 * Fails unless the folder that will hold `file` exists: the tools create missing files,
 * never folders (least of all those of a pool that was never created).
 */
export async function requireFolderOf(file: string, what: string, hint: string): Promise<void> {
  const dir = path.dirname(file);
  if (await pathExists(dir)) return;
  throw new NotFoundError(`the folder ${dir} for the ${what} does not exist`, { hint });
}

/** The size and permission bits of `file`, or undefined when it does not exist. */
export async function fileInfo(file: string): Promise<{ size: number; mode: number } | undefined> {
  try {
    const info = await stat(file);
    return { size: info.size, mode: info.mode & 0o7777 };
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw fileError(file, 'stat', error);
  }
}

/** The restore's input: the file `input`, or standard input for "-". */
export async function openInput(
  input: string,
  cwd: string,
  stdin: AsyncIterable<string | Buffer>,
): Promise<{ source: AsyncIterable<string | Buffer>; close: () => Promise<void> }> {
  if (input === '-') return { source: stdin, close: async () => {} };
  const file = path.resolve(cwd, input);
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') {
      throw new NotFoundError(`no input file at ${file}`, {
        hint: "check the path given with -i (or give '-i -' to read standard input)",
      });
    }
    throw fileError(file, 'open', error);
  }
  return { source: handle.createReadStream({ autoClose: false }), close: () => handle.close() };
}

/** A scratch file next to `target`, on the same filesystem so that a rename can replace it. */
export function scratchPath(target: string, purpose: string): string {
  const suffix = `${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  return path.join(path.dirname(target), `.${path.basename(target)}.${purpose}-${suffix}.tmp`);
}

/**
 * Renames the complete, flushed `scratch` over `target`, then flushes the folder so that
 * the rename itself survives a crash. On any failure the scratch file is removed.
 */
export async function replaceWith(scratch: string, target: string): Promise<void> {
  try {
    await rename(scratch, target);
  } catch (error) {
    await removeScratch(scratch);
    throw fileError(target, 'rename', error);
  }
  let dir: FileHandle | undefined;
  try {
    dir = await open(path.dirname(target), constants.O_RDONLY | constants.O_DIRECTORY);
    await dir.sync();
  } catch (error) {
    throw fileError(path.dirname(target), 'flush', error);
  } finally {
    await dir?.close();
  }
}

export function removeScratch(scratch: string): Promise<void> {
  return rm(scratch, { force: true }).catch(() => {});
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** An `IoError` for a failed fs call on `file`. */
export function fileError(file: string, op: string, error: unknown): IoError {
  const message = error instanceof Error ? error.message : String(error);
  return new IoError(file, op, message, { cause: error });
}
