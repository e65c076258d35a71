/**
 * The external programs this layer drives, found on a search path and run asynchronously:
 * never spawnSync/execSync, because the device they work on may be served by this very
 * process, which must keep its event loop turning while they run.
 */

import { execFile } from 'node:child_process';
import path from 'node:path';
import { findOnPath } from '../util/index.js';
import { MissingToolError, MountError } from './errors.js';

/** Each program this layer runs, and the Debian package it comes with. */
export const PROGRAMS = {
  nbdfuse: 'libnbd-bin',
  'nbd-client': 'nbd-client',
  fusermount3: 'fuse3',
  losetup: 'mount',
  mount: 'mount',
  umount: 'mount',
  blkid: 'util-linux',
  'mkfs.ext4': 'e2fsprogs',
  tune2fs: 'e2fsprogs',
  resize2fs: 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  'mkfs.xfs': 'xfsprogs',
  xfs_growfs: 'xfsprogs',
} as const;

export type Program = keyof typeof PROGRAMS;

/** PATH, then the sbin folders a non-root PATH often lacks. */
export const DEFAULT_SEARCH_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(
  path.delimiter,
);

const found = new Map<string, Promise<string>>();

/** The absolute path of `program`, or a `MissingToolError` naming its package. */
export function locate(program: Program, searchPath = DEFAULT_SEARCH_PATH): Promise<string> {
  const key = `${searchPath}\0${program}`;
  let where = found.get(key);
  if (where === undefined) {
    where = findOnPath(program, searchPath).then((file) => {
      if (file === undefined) throw new MissingToolError(program, PROGRAMS[program]);
      return file;
    });
    where.catch(() => found.delete(key));
    found.set(key, where);
  }
  return where;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `program args` to its end; resolves with its exit status, whatever it is. */
export async function run(
  program: Program,
  args: readonly string[],
  options: { timeoutMs?: number; searchPath?: string } = {},
): Promise<RunResult> {
  const file = await locate(program, options.searchPath);
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        encoding: 'utf8',
        maxBuffer: 16 * 1024 * 1024,
        timeout: options.timeoutMs ?? 120_000,
        killSignal: 'SIGKILL',
      },
      (err, stdout, stderr) => {
        if (err === null) return resolve({ status: 0, stdout, stderr });
        const code = (err as { code?: unknown }).code;
        if ((err as { killed?: boolean }).killed === true) {
          return reject(new MountError(args.at(-1) ?? program, program, 'timed out'));
        }
        if (typeof code !== 'number') return reject(err);
        resolve({ status: code, stdout, stderr });
      },
    );
  });
}

/** Like `run`, but a non-zero exit throws a `MountError` on `device` with the program's words. */
export async function runOk(
  program: Program,
  args: readonly string[],
  device: string,
  options: { timeoutMs?: number; searchPath?: string; hint?: string } = {},
): Promise<string> {
  const result = await run(program, args, options);
  if (result.status !== 0) {
    const words = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-3).join(' ');
    throw new MountError(
      device,
      program,
      `'${program} ${args.join(' ')}' exited with status ${result.status}: ${words}`,
      options.hint === undefined ? {} : { hint: options.hint },
    );
  }
  return result.stdout;
}
