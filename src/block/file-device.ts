/** A BlockDevice backed by a regular file (loop mode). */

import { type FileHandle, open, rm } from 'node:fs/promises';
import { BadInputError, ExistsError, IoError, NotFoundError } from '../util/index.js';
import {
  type BlockDevice,
  checkGrow,
  checkRange,
  checkWritable,
  type ReadFile,
} from './block-device.js';
import { errnoCode, fsError } from './fs-errors.js';
import { punchHole } from './native.js';
import { openDirect, PositionalIo } from './positional-io.js';

/** The largest write of zeros when discard falls back to writing them. */
const ZERO_CHUNK = 1024 * 1024;

/** The errno codes of a filesystem (or kernel) that cannot punch holes. */
const CANNOT_PUNCH = new Set(['EOPNOTSUPP', 'ENOTSUP', 'ENOSYS']);

export interface FileDeviceOptions {
  /** Open the file read-only: writes and grow then fail. */
  readOnly?: boolean;
  /** Create a new sparse file of `size` bytes; fails with `ExistsError` if the file exists. */
  create?: { size: number };
  /**
   * Try each read and write first without waiting (RWF_NOWAIT, synchronously: page-cache
   * hits), and go through the threadpool only for what the kernel refuses; default true
   * where the addon thinp_nowait is built.
   */
  nowait?: boolean;
  /**
   * Hand the writes issued in one turn of the event loop to the threadpool as one job (the
   * addon thinp_batch), instead of one job each; default true where the addon is built.
   */
  batch?: boolean;
  /**
   * Open the file a second time with O_DIRECT for `writeUncached`, which then writes around
   * the page cache; default true for a writable device. Where the filesystem refuses
   * O_DIRECT, `writeUncached` writes as `write` does.
   */
  uncached?: boolean;
}

/**
 * A BlockDevice over one file, through one `FileHandle` kept for the device's life. Reads
 * and writes are positional and loop until the whole buffer is transferred, since the
 * kernel may transfer less. A read past the physical end of the file (a file shortened
 * behind our back) fills zeros. `flush()` waits for the writes (and discards) in flight,
 * then calls `fdatasync`.
 *
 * `discard()` punches a hole through the native addon (src/block/native.ts), so the file
 * gives the space back to the filesystem. Where the addon is missing or the filesystem
 * refuses (EOPNOTSUPP), it writes zeros instead, and `punchesHoles` turns false.
 *
 * The data path is `PositionalIo`'s (src/block/positional-io.ts): reads and writes tried
 * first without waiting (RWF_NOWAIT: page-cache hits done on the spot, never in flight),
 * small whole-page writes on the spot while the file is idle (ext4 refuses RWF_NOWAIT for
 * buffered writes), and the other writes of one turn batched into one threadpool job.
 * `writeUncached` goes around the page cache through a second descriptor opened with
 * O_DIRECT, when the filesystem allows it.
 */
export class FileDevice implements BlockDevice {
  readonly name: string;
  readonly readOnly: boolean;
  #size: number;
  #handle: FileHandle | undefined;
  /** The file opened with O_DIRECT, for `writeUncached`; undefined where refused. */
  #direct: FileHandle | undefined;
  /** Where planned reads read from, while open. */
  #readFile: ReadFile | undefined;
  /** False once the filesystem has refused to punch a hole. */
  #punches = true;
  readonly #io: PositionalIo;

  private constructor(
    path: string,
    handles: { handle: FileHandle; direct: FileHandle | undefined },
    size: number,
    readOnly: boolean,
    options: FileDeviceOptions,
  ) {
    const { handle, direct } = handles;
    this.name = path;
    this.#handle = handle;
    this.#direct = direct;
    this.#readFile = { fd: handle.fd, base: 0 };
    this.#size = size;
    this.readOnly = readOnly;
    this.#io = new PositionalIo(path, 0, options);
  }

  /**
   * Opens the file at `path`, or creates it with `options.create`. Throws `NotFoundError`
   * if it is missing, `ExistsError` if it is to be created but exists, and `IoError` for any
   * other failure.
   */
  static async open(path: string, options: FileDeviceOptions = {}): Promise<FileDevice> {
    const readOnly = options.readOnly ?? false;
    const create = options.create;
    if (create !== undefined && readOnly) {
      throw new BadInputError(`${path}: cannot create a read-only device`);
    }
    if (create !== undefined && (!Number.isSafeInteger(create.size) || create.size < 0)) {
      throw new BadInputError(`${path}: not a device size: ${create.size}`);
    }
    const handle = await openHandle(path, create === undefined ? (readOnly ? 'r' : 'r+') : 'wx+');
    try {
      if (create !== undefined) await handle.truncate(create.size);
      const stat = await handle.stat();
      if (!stat.isFile()) {
        throw new BadInputError(`${path}: not a regular file`, {
          hint: 'give the path of a file (block devices are not supported here)',
        });
      }
      const uncached = !readOnly && (options.uncached ?? true);
      const direct = uncached ? await openDirect(path) : undefined;
      return new FileDevice(path, { handle, direct }, stat.size, readOnly, options);
    } catch (err) {
      await handle.close().catch(() => {});
      if (create !== undefined) await rm(path, { force: true }).catch(() => {});
      if (err instanceof BadInputError) throw err;
      throw fsError(path, create === undefined ? 'open' : 'create', err);
    }
  }

  get size(): number {
    return this.#size;
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    const handle = this.#open('read');
    checkRange(this.name, 'read', offset, buf.length, this.#size);
    await this.#io.read(handle, buf, offset, 'zeros');
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

  /** See `BlockDevice.readFile`. */
  readFile(): ReadFile | undefined {
    return this.#readFile;
  }

  /** See `BlockDevice.readNow`: the range, all from the page cache, or false. */
  readNow(buf: Uint8Array, offset: number): boolean {
    return this.#io.readNow(this.#handle?.fd, this.#size, buf, offset);
  }

  /**
   * Discards the range (see `BlockDevice.discard`): waits for the writes in flight that
   * overlap it, then punches a hole, or writes zeros where holes cannot be punched. A
   * discard in flight counts as a write for `flush()` and `close()`.
   */
  async discard(offset: number, length: number): Promise<void> {
    const handle = this.#open('discard');
    checkWritable(this, 'discard');
    checkRange(this.name, 'discard', offset, length, this.#size);
    if (length === 0) return;
    await this.#io.change(offset, length, () => this.#discard(handle, offset, length));
  }

  /**
   * Whether `discard()` punches holes: false when the native addon is not available or
   * once the filesystem has refused, after which discards write zeros.
   */
  get punchesHoles(): boolean {
    return punchHole !== undefined && this.#punches;
  }

  /**
   * The bytes the file occupies on its filesystem (fstat's blocks × 512): less than `size`
   * for a sparse file; it drops when `discard()` punches holes.
   */
  async allocatedBytes(): Promise<number> {
    const handle = this.#open('stat');
    try {
      return (await handle.stat()).blocks * 512;
    } catch (err) {
      throw fsError(this.name, 'stat', err);
    }
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
    const handle = this.#open('grow');
    checkWritable(this, 'grow');
    checkGrow(this.name, newSize, this.#size);
    try {
      await handle.truncate(newSize);
    } catch (err) {
      throw fsError(this.name, 'grow', err);
    }
    this.#size = newSize;
  }

  /**
   * Waits for the writes in flight, then closes the file; it does not flush. Closing twice
   * is harmless; any other call after it fails.
   */
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

  /** The handle, or an `IoError` once the device is closed. */
  #open(op: string): FileHandle {
    const handle = this.#handle;
    if (handle === undefined) throw new IoError(this.name, op, 'the device is closed');
    return handle;
  }

  /** Punches a hole over the range, or writes zeros over it where that is not supported. */
  async #discard(handle: FileHandle, offset: number, length: number): Promise<void> {
    if (punchHole !== undefined && this.#punches) {
      try {
        await punchHole(handle.fd, offset, length);
        return;
      } catch (err) {
        const code = errnoCode(err);
        if (code === undefined || !CANNOT_PUNCH.has(code)) {
          throw fsError(this.name, 'discard', err, offset, length);
        }
        this.#punches = false;
      }
    }
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
    for (let done = 0; done < length; done += zeros.length) {
      const chunk = zeros.subarray(0, Math.min(zeros.length, length - done));
      await this.#io.writeAll(handle, 'discard', chunk, offset + done);
    }
  }
}

/** Opens `path` with `flags`, mapping a missing or existing file to the error kinds. */
async function openHandle(path: string, flags: string): Promise<FileHandle> {
  try {
    return await open(path, flags);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') {
      const what = flags === 'wx+' ? 'its directory does not exist' : 'no such file';
      throw new NotFoundError(`${path}: ${what}`, {
        hint: 'check the path, or create the device first',
        cause: err,
      });
    }
    if (code === 'EEXIST') {
      throw new ExistsError(`${path}: the file already exists`, {
        hint: 'remove it first, or open it instead of creating it',
        cause: err,
      });
    }
    throw fsError(path, flags === 'wx+' ? 'create' : 'open', err);
  }
}
