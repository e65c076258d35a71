/**
 * mount: a served thin device as a kernel block device and a mounted filesystem: nbdfuse +
 * losetup where the kernel has no nbd module, nbd-client where it has; the mount table;
 * mkfs, filesystem growth and identification. Imports util only.
 *
 * The public API (the storage-driver contract, with these refinements):
 * - `chooseAttacher({ nbdSocket, stateDir, relay?, prefer? })`: `relay` is the reconnecting
 *   relay's command from `nbd/` (`relayCommand`), passed in by the daemon because this layer
 *   does not import `nbd/`; without it mounts do not survive a daemon restart.
 * - `mountDevice(attacher, exportName, target, fs)`, `makeFilesystem(devicePath, type, args)`,
 *   `probeFilesystem(devicePath)`, `growFilesystem(mounted)` (the type comes from `mounted`;
 *   a second argument is accepted and checked). ext4 grows online, or, where the process
 *   lacks CAP_SYS_RESOURCE (containers), by unmount + e2fsck + resize2fs + the same mount.
 * - `MountedFs` also has `type` and `options` (the final -o list); `Attachment` has `readOnly`.
 * - `findMounts(stateDir)`: the argument is the state directory the attacher records into
 *   (ROOT/run/mounts), not a mount prefix; each entry is cross-checked with
 *   /proc/self/mountinfo, `losetup -J` and /proc/PID. `live` ones are adopted through their
 *   `mounted.unmount()`/`attachment.detach()`; `cleanupStale(found)` removes any (lazily,
 *   ending the relay and nbdfuse first, so it never waits on a daemon that is gone).
 * - `unmount()`/`detach()` resolve with a `Lingering` attachment when the filesystem lives
 *   on in mounts not ours (lingering.ts); its device still has a user until `ended()`, then
 *   `settle()` removes its record. `findMounts` reports such ones as `lingering`.
 * - A plain `unmount()`/`detach()` while the daemon is away waits for it (the relay retries
 *   for 5 minutes, then the pending I/O fails with EIO): after a crash, use `cleanupStale`.
 * - Errors: `MountError` (an `IoError`: a program failed; names the program, its stderr and
 *   the fix), `MissingToolError` (a `NotFoundError`: names the Debian package), `BusyError`
 *   (export already attached; filesystem busy at unmount; detach while mounted).
 */

export { chooseAttacher, pickAttacherKind } from './choose-attacher.js';
export { MissingToolError, MountError } from './errors.js';
export {
  EXT4_MKFS_ARGS,
  growFilesystem,
  makeFilesystem,
  probeFilesystem,
} from './filesystem.js';
export { cleanupStale, findMounts } from './find-mounts.js';
export { mountDevice, mountOptions } from './mount-device.js';
export { processStart } from './system.js';
export type {
  Attacher,
  AttacherKind,
  AttacherOptions,
  Attachment,
  AttachmentRecord,
  AttachOptions,
  FoundMount,
  FsOptions,
  FsType,
  Lingering,
  MountedFs,
  RelayCommand,
} from './types.js';
