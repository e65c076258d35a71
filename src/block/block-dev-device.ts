/** A BlockDevice over a real block device, or a region of one (direct mode). */

import { type FileHandle, open } from 'node:fs/promises';
import { BadInputError, IoError, NotFoundError, UnavailableError } from '../util/index.js';
import { blkdevNative, blkdevStatus } from './blkdev-native.js';
import {
  type BlockDevice,
  checkGrow,
  checkRange,
  checkWritable,
  type ReadFile,
} from './block-device.js';
import { errnoCode, fsError } from './fs-errors.js';
import { openDirect, PositionalIo } from './positional-io.js';

/** The largest write of zeros at the unaligned edges of a discard. */
const ZERO_CHUNK = 1024 * 1024;

/** The errno codes of a device that cannot zero a range by unmapping it. */
const CANNOT_PUNCH = new Set(['EOPNOTSUPP', 'ENOTSUP', 'ENOSYS', 'EINVAL']);

export interface BlockDevDeviceOptions {
  /** Open the device read-only: writes, discards and grow then fail. */
  readOnly?: boolean;
  /** Where the region starts on the device, in bytes (a multiple of 4096); 0 by default. */
  offset?: number;
  /** The region's size in bytes; by default, to the end of the device. */
  size?: number;
  /**
   * Open the device a second time with O_DIRECT for `writeUncached`, which then writes
   * around the page cache; default true for a writable device.
   */
  uncached?: boolean;
}

/**
 * A BlockDevice over a region of a block device (the whole device by default), through one
 * `FileHandle` kept for the device's life, with buffered positional I/O that loops over
 * short transfers. The device's size comes from the BLKGETSIZE64 ioctl (thinp_blkdev addon).
 * `flush()` waits for the writes and discards in flight, then calls `fdatasync`, which also
 * flushes the device's write cache.
 *
 * `discard()` zeros the range by unmapping it (fallocate PUNCH_HOLE on the device: a loop
 * device punches a hole in its file, an SSD or thin LV unmaps); where the device cannot,
 * it gives the range back with BLKDISCARD and then zeros it with BLKZEROOUT, and
 * `punchesHoles` turns false. Ranges not aligned to the sector size get zeros written.
 *
 * `grow()` lets the region reach further into the device, up to the device's current end:
 * the device may itself have grown meanwhile (lvextend, `losetup -c`).
 *
 * Buffered I/O, except `writeUncached`, which writes around the page cache through a second
 * descriptor opened with O_DIRECT (the addon copies memory that is not aligned through an
 * aligned buffer). The data path is `PositionalIo`'s, as a file's (positional-io.ts):
 * reads from the device's page cache done at once (RWF_NOWAIT) and planned reads straight
 * from the device (`readFile`); block devices refuse RWF_NOWAIT for buffered writes, so
 * small whole-page writes go on the spot while the device is idle and the rest of a turn's
 * writes as one threadpool job.
 */
export class BlockDevDevice implements BlockDevice {
  readonly name: string;
  readonly path: string;
  readonly readOnly: boolean;
  /** Where the region starts on the device. */
  readonly offset: number;
  readonly sectorSize: number;
  #size: number;
  #handle: FileHandle | undefined;
  /** The device opened with O_DIRECT, for `writeUncached`; undefined where refused. */
  #direct: FileHandle | undefined;
  /** Where planned reads read from, while open. */
  #readFile: ReadFile | undefined;
  #punches = true;
  readonly #io: PositionalIo;

  private constructor(
    path: string,
    handles: { handle: FileHandle; direct: FileHandle | undefined },
    region: { offset: number; size: number },
    sectorSize: number,
    readOnly: boolean,
  ) {
    const { handle, direct } = handles;
    this.path = path;
    this.name = region.offset === 0 ? path : `${path}@${region.offset}`;
    this.#handle = handle;
    this.#direct = direct;
    this.#readFile = { fd: handle.fd, base: region.offset };
    this.offset = region.offset;
    this.#size = region.size;
    this.sectorSize = sectorSize;
    this.readOnly = readOnly;
    this.#io = new PositionalIo(this.name, region.offset);
  }

  /**
   * Opens a region of the block device at `path`. Throws `NotFoundError` when it is
   * missing, `BadInputError` when it is not a block device or the region lies outside it,
   * `UnavailableError` when the addon did not load, and `IoError` for any other failure.
   */
  static async open(path: string, options: BlockDevDeviceOptions = {}): Promise<BlockDevDevice> {
    const native = requireNative(path);
    const readOnly = options.readOnly ?? false;
    const handle = await openHandle(path, readOnly ? 'r' : 'r+');
    try {
      if (!(await handle.stat()).isBlockDevice()) {
        throw new BadInputError(`${path} is not a block device`, {
          hint: 'give a block device or partition (losetup makes one of a file)',
        });
      }
      const deviceSize = native.sizeOf(handle.fd);
      const region = checkRegion(path, deviceSize, options);
      const uncached = !readOnly && (options.uncached ?? true);
      const direct = uncached ? await openDirect(path) : undefined;
      const handles = { handle, direct };
      return new BlockDevDevice(path, handles, region, native.sectorSize(handle.fd), readOnly);
    } catch (err) {
      await handle.close().catch(() => {});
      if (err instanceof BadInputError) throw err;
      throw fsError(path, 'open', err);
    }
  }

  get size(): number {
    return this.#size;
  }

  /** The size of the whole block device now (BLKGETSIZE64). */
  deviceSize(): number {
    const handle = this.#open('stat');
    try {
      return requireNative(this.path).sizeOf(handle.fd);
    } catch (err) {
      throw fsError(this.path, 'stat', err);
    }
  }

  /** Whether `discard()` unmaps ranges, rather than writing or ordering zeros. */
  get punchesHoles(): boolean {
    return this.#punches;
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    const handle = this.#open('read');
    checkRange(this.name, 'read', offset, buf.length, this.#size);
    await this.#io.read(handle, buf, offset, 'fail');
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    const handle = this.#open('write');
    checkWritable(this, 'write');
    checkRange(this.name, 'write', offset, buf.length, this.#size);
    await this.#io.write(handle, buf, offset);
  }

  /** See `BlockDevice.writeUncached` and `PositionalIo.writeUncached`. */
  async writeUncached(buf: Uint8Array, offset: number): Promise<void> {
    const handle = this.#open('write');
    checkWritable(this, 'write');
    checkRange(this.name, 'write', offset, buf.length, this.#size);
    await this.#io.writeUncached(handle, this.#direct?.fd, buf, offset);
  }

  /** Whether `writeUncached` goes around the page cache (O_DIRECT opened, never refused). */
  get writesUncached(): boolean {
    return this.#direct !== undefined && this.#io.uncachedWrites;
  }

  /** See `BlockDevice.stopReadahead` and `PositionalIo.stopReadahead`. */
  stopReadahead(): boolean {
    return this.#io.stopReadahead(this.#handle?.fd);
  }

  /** See `BlockDevice.writeNow` and `PositionalIo.writeWithoutWaiting`. */
  writeNow(buf: Uint8Array, offset: number): boolean {
    return !this.readOnly && this.#io.writeNow(this.#handle?.fd, this.#size, buf, offset);
  }

  /** See `BlockDevice.readNow`: the range, all from the page cache, or false. */
  readNow(buf: Uint8Array, offset: number): boolean {
    return this.#io.readNow(this.#handle?.fd, this.#size, buf, offset);
  }

  /** See `BlockDevice.readFile`: the device, from the region's start. */
  readFile(): ReadFile | undefined {
    return this.#readFile;
  }

  /** Zeros the range, unmapping it where the device can (see the class comment). */
  async discard(offset: number, length: number): Promise<void> {
    const handle = this.#open('discard');
    checkWritable(this, 'discard');
    checkRange(this.name, 'discard', offset, length, this.#size);
    if (length === 0) return;
    await this.#io.change(offset, length, () => this.#discard(handle, offset, length));
  }

  async flush(): Promise<void> {
    const handle = this.#open('flush');
    await this.#io.settle();
    try {
      await handle.datasync();
    } catch (err) {
      throw fsError(this.name, 'flush', err);
    }
  }

  async grow(newSize: number): Promise<void> {
    this.#open('grow');
    checkWritable(this, 'grow');
    checkGrow(this.name, newSize, this.#size);
    const deviceSize = this.deviceSize();
    if (this.offset + newSize > deviceSize) {
      throw new IoError(
        this.name,
        'grow',
        `${this.path} holds ${deviceSize} bytes: a region from byte ${this.offset} cannot ` +
          `grow to ${newSize} bytes`,
        { hint: 'grow the device first (lvextend, losetup -c), or add another device' },
      );
    }
    this.#size = newSize;
  }

  /** Waits for the writes in flight, then closes the device; it does not flush. */
  async close(): Promise<void> {
    const handle = this.#handle;
    if (handle === undefined) return;
    const direct = this.#direct;
    this.#handle = undefined;
    this.#direct = undefined;
    this.#readFile = undefined;
    await this.#io.settle();
    try {
      await direct?.close();
      await handle.close();
    } catch (err) {
      throw fsError(this.name, 'close', err);
    }
  }

  // -------------------------------------------------------------------------------------

  #open(op: string): FileHandle {
    const handle = this.#handle;
    if (handle === undefined) throw new IoError(this.name, op, 'the device is closed');
    return handle;
  }

  /** Zeros written at the unaligned edges, the ioctls over the aligned middle. */
  async #discard(handle: FileHandle, offset: number, length: number): Promise<void> {
    const sector = this.sectorSize;
    const start = this.offset + offset;
    const end = start + length;
    const first = Math.ceil(start / sector) * sector;
    const last = Math.floor(end / sector) * sector;
    if (first >= last) {
      await this.#writeZeros(handle, offset, length);
      return;
    }
    await this.#writeZeros(handle, offset, first - start);
    await this.#writeZeros(handle, last - this.offset, end - last);
    try {
      await this.#zeroAligned(handle.fd, first, last - first);
    } catch (err) {
      throw fsError(this.name, 'discard', err, offset, length);
    }
  }

  async #zeroAligned(fd: number, at: number, length: number): Promise<void> {
    const native = requireNative(this.path);
    if (this.#punches) {
      try {
        await native.blockOp('punch', fd, at, length);
        return;
      } catch (err) {
        const code = errnoCode(err);
        if (code === undefined || !CANNOT_PUNCH.has(code)) throw err;
        this.#punches = false;
      }
    }
    await native.blockOp('discard', fd, at, length).catch((err: unknown) => {
      // A device without discard still zeroes below.
      if (!CANNOT_PUNCH.has(errnoCode(err) ?? '')) throw err;
    });
    await native.blockOp('zeroOut', fd, at, length);
  }

  async #writeZeros(handle: FileHandle, offset: number, length: number): Promise<void> {
    if (length === 0) return;
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
    for (let done = 0; done < length; done += zeros.length) {
      const chunk = zeros.subarray(0, Math.min(zeros.length, length - done));
      await this.#io.writeAll(handle, 'discard', chunk, offset + done);
    }
  }
}

function requireNative(path: string) {
  if (blkdevNative === undefined) {
    throw new UnavailableError(`${path}: block devices need the thinp_blkdev addon`, {
      hint: `${blkdevStatus().reason ?? 'it did not load'}`,
    });
  }
  return blkdevNative;
}

function checkRegion(
  path: string,
  deviceSize: number,
  options: BlockDevDeviceOptions,
): { offset: number; size: number } {
  const offset = options.offset ?? 0;
  const size = options.size ?? deviceSize - offset;
  if (
    !Number.isSafeInteger(offset) ||
    offset < 0 ||
    offset % 4096 !== 0 ||
    !Number.isSafeInteger(size) ||
    size < 0 ||
    offset + size > deviceSize
  ) {
    throw new BadInputError(
      `${path} holds ${deviceSize} bytes: no region of ${size} bytes at byte ${offset}`,
      { hint: 'give a region inside the device, starting at a multiple of 4096' },
    );
  }
  return { offset, size };
}

async function openHandle(path: string, flags: string): Promise<FileHandle> {
  try {
    return await open(path, flags);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new NotFoundError(`${path}: no such device`, {
        hint: 'check the path (lsblk lists the block devices)',
        cause: err,
      });
    }
    throw fsError(path, 'open', err);
  }
}
