/**
 * Docker's init layer (daemon/initlayer): the files and folders a container's runtime mounts
 * over, made in `<id>-init` so that they never show up in the container's own changes:
 * /dev/pts, /dev/shm, /proc, /sys (folders), /.dockerenv, /etc/resolv.conf, /etc/hosts,
 * /etc/hostname, /dev/console (empty files, mode 0755 as Docker makes them) and
 * /etc/mtab -> /proc/mounts. As Docker does, a path that exists in the image (in any form)
 * is left alone, and a missing parent folder is made 0755, owned by root.
 *
 * The layer's filesystem is served by this very process, so the work runs in a child `sh`.
 * A parent that is a symlink or not a folder is not followed: the image's tree may point
 * anywhere, and the entry is skipped rather than written outside the layer.
 */

import { execFile } from 'node:child_process';
import { IoError } from '../util/index.js';

/** [kind, path relative to the root, symlink target]. */
export const INIT_ENTRIES: readonly (readonly [
  kind: 'dir' | 'file' | 'link',
  path: string,
  target?: string,
])[] = [
  ['dir', 'dev/pts'],
  ['dir', 'dev/shm'],
  ['dir', 'proc'],
  ['dir', 'sys'],
  ['file', '.dockerenv'],
  ['file', 'etc/resolv.conf'],
  ['file', 'etc/hosts'],
  ['file', 'etc/hostname'],
  ['file', 'dev/console'],
  ['link', 'etc/mtab', '/proc/mounts'],
];

const SCRIPT = `
set -e
umask 022
cd "$1"
shift
plain_folder() {
  p=.
  for part in $(echo "$1" | tr / ' '); do
    p="$p/$part"
    if [ -L "$p" ]; then return 1; fi
    if [ -e "$p" ] && [ ! -d "$p" ]; then return 1; fi
  done
  return 0
}
while [ $# -gt 0 ]; do
  kind=$1 path=$2 target=$3
  shift 3
  if [ -e "$path" ] || [ -L "$path" ]; then continue; fi
  dir=$(dirname "$path")
  if ! plain_folder "$dir"; then continue; fi
  if [ ! -d "$dir" ]; then mkdir -p "$dir"; chmod 0755 "$dir"; chown 0:0 "$dir"; fi
  case $kind in
    dir) mkdir -m 0755 "$path" ;;
    file) : > "$path"; chmod 0755 "$path" ;;
    link) ln -s "$target" "$path" ;;
  esac
  chown -h 0:0 "$path"
done
`;

/** Makes the init entries missing under `rootfs`, in a child process. */
export function setupInitLayer(rootfs: string, container: string): Promise<void> {
  const args = INIT_ENTRIES.flatMap(([kind, p, target]) => [kind, p, target ?? '-']);
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', SCRIPT, 'sh', rootfs, ...args], (err, _stdout, stderr) => {
      if (err === null) {
        resolve();
        return;
      }
      reject(
        new IoError(
          `container ${container}`,
          'making the init layer',
          stderr.trim() || err.message,
          {
            hint: 'check the filesystem of the container (it may be full or read-only)',
            cause: err,
          },
        ),
      );
    });
  });
}
