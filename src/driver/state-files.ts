/**
 * The device set's JSON state files (ROOT/metadata/*, ROOT/thinp.json), written the way
 * Docker's devicemapper driver writes them: to a temporary file in the same folder, synced,
 * renamed over the old one, then the folder synced. A crash leaves the old file or the new
 * one, never a mix. Temporary files start with `.tmp-`, so no device can be named like one.
 */

import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { BadInputError, IoError } from '../util/index.js';

/** Writes `value` as JSON to `file` atomically and durably. */
export async function writeStateFile(file: string, value: unknown): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(value)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw ioError(file, 'write', err);
  }
  await syncFolder(dir);
}

/** The parsed JSON of `file`, or undefined when there is no such file. */
export async function readStateFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw ioError(file, 'read', err);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new BadInputError(`${file} is not valid JSON (${(err as Error).message})`, {
      hint: 'restore the file from a backup, or remove it if it names nothing the pool holds',
    });
  }
}

/** Removes `file` durably; a missing file is not an error. */
export async function removeStateFile(file: string): Promise<void> {
  try {
    await rm(file, { force: true });
  } catch (err) {
    throw ioError(file, 'remove', err);
  }
  await syncFolder(path.dirname(file));
}

/** The names of the files in `dir`, leaving out temporary files of interrupted writes. */
export async function listStateFiles(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return [];
    throw ioError(dir, 'list', err);
  }
}

/** Makes a rename or removal in `dir` durable (fsync of the folder). */
export async function syncFolder(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw ioError(dir, 'sync', err);
  }
}

export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function ioError(file: string, op: string, err: unknown): IoError {
  if (err instanceof IoError) return err;
  return new IoError(file, op, (err as Error).message ?? String(err), { cause: err });
}
