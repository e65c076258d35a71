/**
 * Attachment records on disk: STATE_DIR/<key>.json, one per attachment, written atomically
 * (a temp file in the same directory, fsync, rename), so that a crash leaves either the old
 * record or the new one. A record is written before each step that creates something (a
 * process, a loop device, a mount) and removed only once everything is verifiably gone, so a
 * restarted daemon always knows what a crashed one may have left.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { BadInputError } from '../util/index.js';
import type { AttachmentRecord } from './types.js';

const SUFFIX = '.json';

/** The file name stem for `exportName`: safe in a path whatever the name holds. */
export function keyOf(exportName: string): string {
  return encodeURIComponent(exportName).replace(/\./g, '%2E');
}

export function stateFileOf(stateDir: string, exportName: string): string {
  return path.join(stateDir, `${keyOf(exportName)}${SUFFIX}`);
}

/** Writes `record` to `file` atomically. */
export async function writeRecord(file: string, record: AttachmentRecord): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(record, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
}

/** The record in `file`, or undefined when there is none. */
export async function readRecord(file: string): Promise<AttachmentRecord | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
    throw err;
  }
  const record = JSON.parse(text) as AttachmentRecord;
  if (record.version !== 1 || typeof record.exportName !== 'string') {
    throw new BadInputError(`${file} is not an attachment record of this version`, {
      hint: 'move it aside; the attachment it describes must then be cleaned up by hand',
    });
  }
  return record;
}

export async function removeRecord(file: string): Promise<void> {
  await rm(file, { force: true });
}

/** The record files in `stateDir` (none when it does not exist). */
export async function listRecordFiles(stateDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(stateDir);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .filter((n) => n.endsWith(SUFFIX))
    .sort()
    .map((n) => path.join(stateDir, n));
}
