/**
 * Installs the Debian packages that the tests or the daemon need, before `npm test` and
 * `npm start`. As root on Debian it installs what is missing with apt-get and says so;
 * elsewhere it prints the exact apt-get line and fails.
 *
 *     tsx scripts/debian-deps.ts test|start
 */

import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Need {
  /** The Debian package. */
  package: string;
  /** What it is for, printed when it is installed. */
  why: string;
}

export const NEEDS: Readonly<Record<string, readonly Need[]>> = {
  test: [
    { package: 'xfsprogs', why: 'mkfs.xfs, which makes xfs the default base filesystem' },
    {
      package: 'thin-provisioning-tools',
      why: 'thin_check, thin_dump and thin_restore: the reference for the metadata format',
    },
    {
      package: 'libnbd-bin',
      why: 'nbdinfo, nbdcopy and nbdfuse: real NBD clients that list, map, copy and attach the exports',
    },
    {
      package: 'qemu-utils',
      why: 'qemu-img and qemu-io: real NBD clients that convert images and verify patterns',
    },
    { package: 'fio', why: 'fio with its nbd engine: random I/O with crc32c verification' },
    { package: 'nbdkit', why: 'nbdkit file: the raw NBD file server the nbd benchmark compares' },
    {
      package: 'e2fsprogs',
      why: 'mkfs.ext4 and e2fsck: a kernel filesystem on a device attached with nbdfuse',
    },
    { package: 'fuse3', why: 'fusermount3, which unmounts nbdfuse' },
    {
      package: 'busybox-static',
      why: 'a static /bin/busybox: the programs of the test images, run in a container with chroot',
    },
    {
      package: 'docker.io',
      why: "dockerd and docker: a real dockerd on thinp's graphdriver plugin, and 'docker load' of 'thinp image save'",
    },
    {
      package: 'containerd',
      why: 'containerd and ctr: a real containerd with thinp as a proxy snapshotter',
    },
    { package: 'runc', why: 'the runtime that runs the test containers of dockerd and containerd' },
    {
      package: 'golang-go',
      why: "Go, which builds containerd's snapshotter conformance suite offline (shared/tools)",
    },
    { package: 'tar', why: 'GNU tar: the reference unpacker that layer tars are compared with' },
    {
      package: 'mount',
      why: 'losetup: loop devices over sparse files, the block devices of direct mode',
    },
    {
      package: 'util-linux',
      why: 'blkid and wipefs: direct-lvm refuses a device that holds a filesystem, and wipes it when forced; fincore: what of a file the page cache holds',
    },
  ],
  start: [
    { package: 'xfsprogs', why: 'mkfs.xfs and xfs_growfs for xfs base devices (the default)' },
    {
      package: 'e2fsprogs',
      why: 'mkfs.ext4, tune2fs, resize2fs and e2fsck for ext4 base devices',
    },
    { package: 'libnbd-bin', why: 'nbdfuse, which attaches devices where the kernel has no nbd' },
    { package: 'fuse3', why: 'fusermount3, which unmounts nbdfuse' },
    { package: 'mount', why: 'losetup, mount and umount: layers mounted as kernel filesystems' },
    {
      package: 'util-linux',
      why: 'blkid (filesystem and UUID of a device) and wipefs (dm.directlvm_device_force)',
    },
  ],
};

export type Plan =
  | { action: 'none' }
  | { action: 'install'; commands: string[][] }
  | { action: 'fail'; message: string };

/** What to do about the `missing` packages, given who and where we are. */
export function planInstall(
  missing: readonly string[],
  where: { root: boolean; debian: boolean },
): Plan {
  if (missing.length === 0) return { action: 'none' };
  const install = ['apt-get', 'install', '-y', '--no-install-recommends', ...missing];
  if (where.root && where.debian) {
    return { action: 'install', commands: [['apt-get', 'update'], install] };
  }
  const line = `${where.root ? '' : 'sudo '}${install.join(' ')}`;
  const why = where.debian
    ? 'this needs root'
    : 'this is not Debian: install the equivalent packages';
  return {
    action: 'fail',
    message: `thinp: missing Debian packages ${missing.join(', ')} (${why}); run: ${line}`,
  };
}

async function installed(pkg: string): Promise<boolean> {
  try {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format syntax; "ii " = installed
    const { stdout } = await run('dpkg-query', ['-W', '-f=${db:Status-Abbrev}', pkg]);
    return stdout.startsWith('ii');
  } catch {
    return false;
  }
}

/** Runs a command with its output on our stderr, so that stdout stays the caller's. */
async function runShown(command: string, args: readonly string[]): Promise<number | null> {
  const child = spawn(command, args, {
    stdio: ['ignore', 2, 2],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return code;
}

async function main(purpose: string | undefined): Promise<number> {
  const needs = purpose === undefined ? undefined : NEEDS[purpose];
  if (needs === undefined) {
    console.error(`thinp: usage: debian-deps.ts ${Object.keys(NEEDS).join('|')}`);
    return 2;
  }
  const missing: string[] = [];
  for (const need of needs) if (!(await installed(need.package))) missing.push(need.package);
  const plan = planInstall(missing, {
    root: process.getuid?.() === 0,
    debian: existsSync('/etc/debian_version'),
  });
  if (plan.action === 'fail') {
    console.error(plan.message);
    return 1;
  }
  if (plan.action === 'install') {
    for (const need of needs.filter((n) => missing.includes(n.package))) {
      console.error(`thinp: installing ${need.package}: ${need.why}`);
    }
    for (const [command = '', ...args] of plan.commands) {
      const status = await runShown(command, args);
      if (status !== 0) {
        console.error(`thinp: '${[command, ...args].join(' ')}' failed with status ${status}`);
        return 1;
      }
    }
  }
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv[2]);
}
