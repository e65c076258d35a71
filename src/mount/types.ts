/**
 * The contract of the mount layer: how a served thin device becomes a kernel block device
 * (an `Attachment`, made by an `Attacher`), and a mounted filesystem on it (`MountedFs`).
 * Mechanisms only: no layers, no reference counts; `graph/` keeps those.
 *
 * What callers may rely on:
 * - `attach` resolves only once `devicePath` is a block device that reads the export; when it
 *   fails, nothing it started is left behind (process, FUSE mount, loop device, state file).
 * - `detach` and `unmount` resolve only once every piece is verifiably gone: no loop device
 *   on the backing file, no FUSE mount, no nbdfuse or relay process, no state file. When a
 *   step fails they throw a `BusyError`/`IoError` naming what is still there, and a later
 *   call retries the steps still to do.
 * - Every external program runs asynchronously (never spawnSync/execSync): the device is
 *   served by this very process, and a synchronous call into it would never return.
 * - An attachment outlives the process that made it: its pieces run detached, and a state
 *   file records them, so that `findMounts` in a restarted daemon adopts it (`live`) or
 *   cleans it (`stale`, with `cleanupStale`).
 *
 * Life cycle: `chooseAttacher` → `attach` → `makeFilesystem`/`probeFilesystem` on
 * `devicePath` → `mountDevice` → (`growFilesystem`) → `unmount`. After a restart:
 * `findMounts(stateDir)` → adopt the live ones, `cleanupStale` the others.
 */

/** The kernel block device of one export. */
export interface Attachment {
  /** `/dev/loopN` (nbdfuse backend) or `/dev/nbdN` (nbd-client backend). */
  readonly devicePath: string;
  readonly exportName: string;
  readonly readOnly: boolean;
  /**
   * Removes the block device and everything under it; verified (see above). When a
   * filesystem on it is still mounted by someone else, hands it over instead (teardown.ts)
   * and resolves with the `Lingering` attachment.
   */
  detach(): Promise<Lingering | undefined>;
}

/**
 * An attachment handed over to mounts that are not ours (a container's, a bind mount whose
 * lazy unmount has not finished): its loop device clears at its last close, and nbdfuse and
 * the relay serve the device until then. Its record stays, under a name of its own, so a
 * restarted daemon knows the device still has a user.
 */
export interface Lingering {
  readonly exportName: string;
  /** Whether nbdfuse and the relay have ended (the kernel let go of the device). */
  ended(): Promise<boolean>;
  /** Removes what is left (record, FUSE directory, log); call once `ended()`. */
  settle(): Promise<void>;
}

export type AttacherKind = 'nbd-client' | 'nbdfuse';

export interface AttachOptions {
  readOnly?: boolean;
}

/** Makes attachments of the exports of one NBD server. */
export interface Attacher {
  readonly kind: AttacherKind;
  attach(exportName: string, options?: AttachOptions): Promise<Attachment>;
}

/**
 * The command that relays one export from the daemon's socket to a client over its
 * stdin/stdout (a socket), reconnecting when the daemon restarts: `src/nbd` provides it
 * (`relayCommand`), the daemon hands it to `chooseAttacher`. The mount layer does not import
 * `nbd/`, so it takes the command as a function.
 */
export type RelayCommand = (nbdSocket: string, exportName: string) => string[];

export interface AttacherOptions {
  /** The daemon's NBD socket (ROOT/nbd.sock); export name = device name. */
  nbdSocket: string;
  /** Where attachments are recorded (ROOT/run/mounts): one `<key>.json` each. */
  stateDir: string;
  /**
   * The reconnecting relay between nbdfuse and the daemon. Without it nbdfuse connects to
   * the socket directly, and its mounts do not survive a restart of the daemon.
   */
  relay?: RelayCommand;
  /** Which backend: the default `auto` takes nbd-client when /sys/module/nbd exists. */
  prefer?: AttacherKind | 'auto';
  /** Where programs are looked up (PATH syntax); PATH plus /usr/sbin:/sbin by default. */
  searchPath?: string;
}

export type FsType = 'xfs' | 'ext4';

export interface FsOptions {
  type: FsType;
  /** Mount options (`-o`), e.g. dm.mountopt's; xfs always gets `nouuid` as well. */
  options: string[];
  readOnly?: boolean;
}

/** A filesystem mounted on an attachment. */
export interface MountedFs {
  readonly target: string;
  readonly type: FsType;
  /** The `-o` list it is mounted with (nouuid and ro included). */
  readonly options: readonly string[];
  readonly attachment: Attachment;
  /** umount, then detach; each step verified. Resolves with the attachment if it lingers. */
  unmount(): Promise<Lingering | undefined>;
}

/** What a state file records about one attachment (and its mount, once mounted). */
export interface AttachmentRecord {
  version: 1;
  kind: AttacherKind;
  exportName: string;
  readOnly: boolean;
  /** The block device: /dev/loopN or /dev/nbdN. */
  devicePath: string;
  /** nbdfuse: the FUSE mountpoint and the file nbdfuse shows in it (the loop's backing file). */
  fuseDir?: string;
  fuseFile?: string;
  /** nbdfuse (or nbd-client) process and its start time (field 22 of /proc/PID/stat). */
  pid?: number;
  pidStart?: string;
  /** The relay nbdfuse runs (its child), when there is one. */
  relayPid?: number;
  relayStart?: string;
  /** Where nbdfuse's (and the relay's) messages go. */
  logFile?: string;
  /** The filesystem mount, once made. */
  target?: string;
  fsType?: FsType;
  /** The `-o` list it was mounted with. */
  mountOptions?: string[];
  /** Handed over to mounts not ours (see `Lingering`): nothing of it is ours to take down. */
  handedOver?: boolean;
}

/** One attachment found on the machine from its state file, checked against the system. */
export interface FoundMount {
  /** The state file it came from. */
  stateFile: string;
  record: AttachmentRecord;
  /**
   * `live`: every piece is there and the export still answers; adopt it with `adopt`.
   * `stale`: something is missing or dead (a crashed daemon): `cleanupStale` removes the rest.
   * `lingering`: handed over, and its processes still serve a mount not ours: `lingering`.
   */
  state: 'live' | 'stale' | 'lingering';
  /** What was found missing, for the log ("nbdfuse 1234 is gone", "loop0 detached"). */
  problems: string[];
  /**
   * The attachment as an object again, and its filesystem when the record has a target: a
   * restarted daemon adopts these when `live` (their `unmount`/`detach` work as if made now).
   */
  attachment: Attachment;
  mounted: MountedFs | undefined;
  /** The handed-over attachment, when `lingering`. */
  lingering: Lingering | undefined;
}
