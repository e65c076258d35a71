/**
 * Which backend attaches exports here: the kernel's nbd module when it is loaded
 * (/sys/module/nbd) and nbd-client is installed, else nbdfuse + losetup.
 */

import { access } from 'node:fs/promises';
import { NbdClientAttacher } from './nbd-client-attacher.js';
import { NbdfuseAttacher } from './nbdfuse-attacher.js';
import { locate } from './programs.js';
import type { Attacher, AttacherKind, AttacherOptions } from './types.js';

/** Where the kernel shows its loaded modules; a parameter for tests. */
export const NBD_MODULE_DIR = '/sys/module/nbd';

/** The backend for this machine: `prefer` when given, else by what the kernel has. */
export async function pickAttacherKind(
  opts: Pick<AttacherOptions, 'prefer' | 'searchPath'>,
  moduleDir = NBD_MODULE_DIR,
): Promise<AttacherKind> {
  if (opts.prefer !== undefined && opts.prefer !== 'auto') return opts.prefer;
  const hasModule = await access(moduleDir).then(
    () => true,
    () => false,
  );
  if (!hasModule) return 'nbdfuse';
  return locate('nbd-client', opts.searchPath).then(
    () => 'nbd-client' as const,
    () => 'nbdfuse' as const,
  );
}

export async function chooseAttacher(opts: AttacherOptions): Promise<Attacher> {
  const kind = await pickAttacherKind(opts);
  if (kind === 'nbd-client') return new NbdClientAttacher(opts);
  await locate('nbdfuse', opts.searchPath);
  await locate('losetup', opts.searchPath);
  await locate('fusermount3', opts.searchPath);
  return new NbdfuseAttacher(opts);
}
