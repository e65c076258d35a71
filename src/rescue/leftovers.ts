/**
 * Work directories of rescues that ended without closing (killed, or a crash): each session
 * records its owner (pid and process start time) in `owner.json`; a later session removes the
 * work directories under the same parent whose owner is gone, first tearing down (lazily)
 * every attachment and mount recorded under their `mounts/`, so that nothing a rescue
 * started (nbdfuse, loop devices, mounts) outlives it for long.
 */

import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanupStale, findMounts, processStart } from '../mount/index.js';

export const WORK_PREFIX = 'thinp-rescue-';
const OWNER_FILE = 'owner.json';

interface Owner {
  pid: number;
  start: string | undefined;
}

/** Records this process as the owner of `workDir`. */
export async function claimWorkDir(workDir: string): Promise<void> {
  const owner: Owner = { pid: process.pid, start: await processStart(process.pid) };
  await writeFile(path.join(workDir, OWNER_FILE), JSON.stringify(owner), { mode: 0o600 });
}

/** Cleans the work directories under `parent` whose owner is gone; returns them. */
export async function cleanLeftovers(parent: string): Promise<string[]> {
  const cleaned: string[] = [];
  const names = await readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(WORK_PREFIX)) continue;
    const dir = path.join(parent, name);
    const owner = await readOwner(dir);
    if (owner === undefined || (await alive(owner))) continue;
    for (const found of await findMounts(path.join(dir, 'mounts')).catch(() => [])) {
      await cleanupStale(found);
    }
    await rm(dir, { recursive: true, force: true });
    cleaned.push(dir);
  }
  return cleaned;
}

async function readOwner(dir: string): Promise<Owner | undefined> {
  try {
    const o = JSON.parse(await readFile(path.join(dir, OWNER_FILE), 'utf8')) as Owner;
    return typeof o.pid === 'number' ? o : undefined;
  } catch {
    return undefined;
  }
}

async function alive(owner: Owner): Promise<boolean> {
  const start = await processStart(owner.pid);
  return start !== undefined && start === owner.start;
}
