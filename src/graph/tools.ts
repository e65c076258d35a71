/**
 * What the layer store asks of the machine, as two small tables it is handed (the daemon
 * hands it `mount/`'s and `archive/`'s functions; tests may hand it the same):
 *
 * - `FilesystemTools` (mount/): make, identify, mount, grow and find filesystems on served
 *   devices. Every program runs in a child process, asynchronously.
 * - `TreeTools` (archive/): Docker's naive diff on plain directories: apply a layer tar,
 *   export a diff, list changes, count their size. Each runs in a child process.
 *
 * Both rules come from the same fact: the layers' filesystems are served by this process
 * (kernel → loop → FUSE → nbdfuse → NBD socket → this event loop), so any filesystem call
 * on a mounted layer made from this process could wait on itself. The layer store itself
 * never touches a mounted tree; see layer-root.ts for the two files it makes there.
 */

import type { Change } from '../archive/index.js';
import type { Attacher, FoundMount, FsOptions, FsType, MountedFs } from '../mount/index.js';

export interface FilesystemTools {
  mountDevice(
    attacher: Attacher,
    exportName: string,
    target: string,
    fs: FsOptions,
  ): Promise<MountedFs>;
  makeFilesystem(devicePath: string, type: FsType, extraArgs: string[]): Promise<void>;
  probeFilesystem(devicePath: string): Promise<{ type: string; uuid: string } | undefined>;
  /** Grows the mounted filesystem to its device's size. */
  growFilesystem(mounted: MountedFs): Promise<void>;
  /** The attachments recorded in `stateDir`, each checked against the machine. */
  findMounts(stateDir: string): Promise<FoundMount[]>;
  cleanupStale(found: FoundMount): Promise<void>;
}

export interface TreeTools {
  /** Applies a layer tar into `root`; resolves with the summed sizes of its entries. */
  applyLayer(
    root: string,
    tar: NodeJS.ReadableStream,
    options?: { onProgress?: (bytesRead: number) => void },
  ): Promise<{ size: number }>;
  /** The tar of `root`'s changes against `parentRoot` (the whole tree when undefined). */
  exportDiff(root: string, parentRoot: string | undefined): NodeJS.ReadableStream;
  listChanges(root: string, parentRoot: string | undefined): Promise<Change[]>;
  diffSize(root: string, parentRoot: string | undefined): Promise<number>;
}
