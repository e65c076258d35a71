/**
 * The two things Docker's devicemapper driver keeps at the top of every layer's filesystem:
 * `rootfs/` (0755, owned by root), the directory the layer's files live in, which hides
 * the filesystem's own `lost+found`; and `id` (0600), the layer's id, written if missing
 * "to help reconstruct this in case of later problems" (a snapshot keeps its parent's).
 *
 * The mounted filesystem is served by this very process, so the work runs in a child
 * (`sh`), never as an fs call of this process (tools.ts says why).
 */

import { execFile } from 'node:child_process';
import path from 'node:path';
import { IoError } from '../util/index.js';

export const ROOTFS = 'rootfs';
export const ID_FILE = 'id';

const SCRIPT = [
  'set -e',
  'cd "$1"',
  `[ -d ${ROOTFS} ] || mkdir -m 0755 ${ROOTFS}`,
  `chown 0:0 ${ROOTFS}`,
  `if [ ! -e ${ID_FILE} ]; then (umask 077 && printf '%s' "$2" > ${ID_FILE}); fi`,
].join('\n');

/** Makes `rootfs/` and `id` in the filesystem mounted at `mountpoint`; returns rootfs/. */
export function prepareLayerRoot(mountpoint: string, id: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', SCRIPT, 'sh', mountpoint, id], (err, _stdout, stderr) => {
      if (err === null) {
        resolve(path.join(mountpoint, ROOTFS));
        return;
      }
      reject(
        new IoError(`layer ${id}`, `making rootfs/ and id in ${mountpoint}`, detail(stderr, err), {
          hint: 'check the filesystem of the layer (it may be full or read-only)',
          cause: err,
        }),
      );
    });
  });
}

function detail(stderr: string, err: Error): string {
  return stderr.trim() === '' ? err.message : stderr.trim();
}
