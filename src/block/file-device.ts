/** A BlockDevice backed by a regular file (loop mode). */

import { writeSync } from 'node:fs';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { getSystemErrorName } from 'node:util';
import { BadInputError, ExistsError, IoError, NotFoundError } from '../util/index.js';
import { type WriteBatch, writeBatch } from './batch-native.js';
import { type BlockDevice, checkGrow, checkRange, checkWritable } from './block-device.js';
import { errnoCode, fsError } from './fs-errors.js';
import { punchHole } from './native.js';
import { type NowaitIo, nowaitIo } from './nowait-native.js';

/** The largest write of zeros when discard falls back to writing them. */
const ZERO_CHUNK = 1024 * 1024;

/** A transfer with RWF_NOWAIT that the kernel or filesystem does not offer (negated). */
const NOWAIT_UNSUPPORTED = -95; // -EOPNOTSUPP

/** A failed write's result when the batch could not run at all (negated EIO). */
const EIO = -5;

/** A batch of writes handed to the threadpool at once holds at most this many bytes. */
const BATCH_BYTES = 1024 * 1024;

/** The largest write done on the spot while the device is idle (see the class comment). */
const AT_ONCE_MAX = 64 * 1024;
/** Writes done on the spot cover whole pages, so the kernel never reads a page to merge. */
const PAGE = 4096;

/** Writes queued for one threadpool job (`writeBatch`), with how each one settles. */
interface WriteQueue {
  buffers: Uint8Array[];
  offsets: number[];
  settle: Array<(result: number) => void>;
  bytes: number;
}

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
 * Reads and writes first try RWF_NOWAIT through the addon thinp_nowait
 * (src/block/nowait-native.ts): what the page cache can serve at once is done on the spot,
 * with no threadpool round trip; the rest (not cached, or the filesystem would wait) goes
 * through the FileHandle as before. Such a transfer never blocks, and it is complete when
 * the call returns, so it is never in flight. A filesystem that does not offer RWF_NOWAIT
 * for reads or for writes turns that direction's attempts off for the device.
 *
 * Where the filesystem refuses RWF_NOWAIT for writes (ext4's buffered writes), a write of at
 * most 64 KiB covering whole pages, issued while no other write or discard is in flight, is
 * written on the spot with a plain `pwrite`: it lands in the page cache (no page is read to
 * merge it), and a lone request, as at queue depth 1, saves the two thread wake-ups of a
 * threadpool job. Writes issued while others are in flight still go to the threadpool, so a
 * burst never waits on the event loop behind one slow write.
 *
 * The writes that do go through the threadpool are batched: those issued in one turn of the
 * event loop (up to 1 MiB) go as one job of the addon thinp_batch (src/block/batch-native.ts),
 * submitted by a `process.nextTick`, so a batch pays one thread wake-up and one completion.
 * Each write of a batch is in flight (for `flush`, `discard` and `close`) until the job ends.
 */
export class FileDevice implements BlockDevice {
  readonly name: string;
  readonly readOnly: boolean;
  #size: number;
  #handle: FileHandle | undefined;
  /** The writes and discards in flight, with the byte range each changes. */
  readonly #inFlight = new Map<Promise<void>, { offset: number; length: number }>();
  /** False once the filesystem has refused to punch a hole. */
  #punches = true;
  /** RWF_NOWAIT reads and writes, until the filesystem says it offers none. */
  #nowaitReads: NowaitIo | undefined;
  #nowaitWrites: NowaitIo | undefined;
  /** The threadpool's batched writes, and the batch being gathered this turn. */
  readonly #writeBatch: WriteBatch | undefined;
  #queue: WriteQueue | undefined;

  private constructor(
    path: string,
    handle: FileHandle,
    size: number,
    readOnly: boolean,
    options: FileDeviceOptions,
  ) {
    this.name = path;
    this.#handle = handle;
    this.#size = size;
    this.readOnly = readOnly;
    const nowait = options.nowait ?? true;
    this.#nowaitReads = nowait ? nowaitIo : undefined;
    this.#nowaitWrites = nowait ? nowaitIo : undefined;
    this.#writeBatch = (options.batch ?? true) ? writeBatch : undefined;
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
      return new FileDevice(path, handle, stat.size, readOnly, options);
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
    let done = this.#readNowait(handle.fd, buf, offset);
    while (done < buf.length) {
      let n: number;
      try {
        ({ bytesRead: n } = await handle.read(buf, done, buf.length - done, offset + done));
      } catch (err) {
        throw fsError(this.name, 'read', err, offset, buf.length);
      }
      if (n === 0) {
        buf.fill(0, done);
        return;
      }
      done += n;
    }
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    const handle = this.#open('write');
    checkWritable(this, 'write');
    checkRange(this.name, 'write', offset, buf.length, this.#size);
    const done = this.#writeWithoutWaiting(handle.fd, buf, offset);
    if (done === buf.length) return;
    const rest = buf.subarray(done);
    const at = offset + done;
    const pending =
      this.#writeBatch === undefined
        ? this.#writeAll(handle, 'write', rest, at)
        : this.#queueWrite(handle.fd, rest, at);
    await this.#track(pending, offset, buf.length);
  }

  /** See `BlockDevice.writeNow`: RWF_NOWAIT, or on the spot when idle (the class comment). */
  writeNow(buf: Uint8Array, offset: number): boolean {
    const handle = this.#handle;
    if (handle === undefined || this.readOnly) return false;
    if (offset < 0 || offset + buf.length > this.#size) return false;
    return this.#writeWithoutWaiting(handle.fd, buf, offset) === buf.length;
  }

  /**
   * What can be written of `buf` without a threadpool job: RWF_NOWAIT's part, or all of it
   * on the spot when RWF_NOWAIT wrote nothing and `#writeAtOnce` may; the bytes written.
   */
  #writeWithoutWaiting(fd: number, buf: Uint8Array, offset: number): number {
    const done = this.#writeNowait(fd, buf, offset);
    if (done === 0 && this.#writeAtOnce(fd, buf, offset)) return buf.length;
    return done;
  }

  /**
   * Writes `buf` on the spot when the device is idle (nothing in flight, no batch gathered),
   * the write is small and covers whole pages; false otherwise. Such a write lands in the
   * page cache and does not wait for the disk, and a threadpool job for it would cost two
   * thread wake-ups, more than the write itself.
   */
  #writeAtOnce(fd: number, buf: Uint8Array, offset: number): boolean {
    if (this.#writeBatch === undefined || this.#inFlight.size > 0 || this.#queue !== undefined) {
      return false;
    }
    if (buf.length > AT_ONCE_MAX || offset % PAGE !== 0 || buf.length % PAGE !== 0) return false;
    for (let done = 0; done < buf.length; ) {
      let n: number;
      try {
        n = writeSync(fd, buf, done, buf.length - done, offset + done);
      } catch (err) {
        throw fsError(this.name, 'write', err, offset, buf.length);
      }
      if (n <= 0) throw new IoError(this.name, 'write', `no progress after ${done} bytes`);
      done += n;
    }
    return true;
  }

  /** Adds a write to this turn's batch, started by a `process.nextTick`. */
  #queueWrite(fd: number, buf: Uint8Array, offset: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let queue = this.#queue;
      if (queue === undefined || queue.bytes + buf.length > BATCH_BYTES) {
        const fresh: WriteQueue = { buffers: [], offsets: [], settle: [], bytes: 0 };
        this.#queue = queue = fresh;
        process.nextTick(() => this.#submit(fd, fresh));
      }
      queue.buffers.push(buf);
      queue.offsets.push(offset);
      queue.bytes += buf.length;
      queue.settle.push((n) => {
        if (n === buf.length) resolve();
        else reject(this.#batchError(n, offset, buf.length));
      });
    });
  }

  /** Hands `queue` to the threadpool; a job that cannot be queued fails its writes (EIO). */
  #submit(fd: number, queue: WriteQueue): void {
    if (this.#queue === queue) this.#queue = undefined;
    const settle = (results: readonly number[]) => {
      for (const [i, s] of queue.settle.entries()) s(results[i] ?? EIO);
    };
    try {
      (this.#writeBatch as WriteBatch)(fd, queue.buffers, queue.offsets, settle);
    } catch {
      for (const s of queue.settle) s(EIO);
    }
  }

  /** The IoError of a batched write whose result is `n` (a negated errno, or short). */
  #batchError(n: number, offset: number, length: number): IoError {
    if (n >= 0) return new IoError(this.name, 'write', `no progress after ${n} of ${length} bytes`);
    const code = getSystemErrorName(n);
    const err = Object.assign(new Error(`${code}: write failed`), { code, errno: n });
    return fsError(this.name, 'write', err, offset, length);
  }

  /** See `BlockDevice.readFd`. */
  readFd(): number | undefined {
    return this.#handle?.fd;
  }

  /** See `BlockDevice.readNow`: the range, all from the page cache, or false. */
  readNow(buf: Uint8Array, offset: number): boolean {
    const handle = this.#handle;
    if (handle === undefined || this.#nowaitReads === undefined) return false;
    if (offset < 0 || offset + buf.length > this.#size) return false;
    return this.#readNowait(handle.fd, buf, offset) === buf.length;
  }

  /** Reads what the page cache holds of the range at once; returns the bytes read. */
  #readNowait(fd: number, buf: Uint8Array, offset: number): number {
    const io = this.#nowaitReads;
    let done = 0;
    while (io !== undefined && done < buf.length) {
      const n = io.readNowait(fd, done === 0 ? buf : buf.subarray(done), offset + done);
      if (n === NOWAIT_UNSUPPORTED) this.#nowaitReads = undefined;
      if (n <= 0) break;
      done += n;
    }
    return done;
  }

  /** Writes what can be written at once without waiting; returns the bytes written. */
  #writeNowait(fd: number, buf: Uint8Array, offset: number): number {
    const io = this.#nowaitWrites;
    let done = 0;
    while (io !== undefined && done < buf.length) {
      const n = io.writeNowait(fd, done === 0 ? buf : buf.subarray(done), offset + done);
      if (n === NOWAIT_UNSUPPORTED) this.#nowaitWrites = undefined;
      if (n <= 0) break;
      done += n;
    }
    return done;
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
    const overlapping = [...this.#inFlight]
      .filter(([, range]) => range.offset < offset + length && offset < range.offset + range.length)
      .map(([pending]) => pending);
    const discarding = (async () => {
      await Promise.allSettled(overlapping);
      await this.#discard(handle, offset, length);
    })();
    await this.#track(discarding, offset, length);
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
    await this.#settle();
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
    this.#handle = undefined;
    await this.#settle();
    try {
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

  /** Resolves once every write now in flight has finished, whether or not it failed. */
  async #settle(): Promise<void> {
    await Promise.allSettled([...this.#inFlight.keys()]);
  }

  /** Awaits `pending`, a change to `length` bytes at `offset`, keeping it in flight meanwhile. */
  async #track(pending: Promise<void>, offset: number, length: number): Promise<void> {
    this.#inFlight.set(pending, { offset, length });
    try {
      await pending;
    } finally {
      this.#inFlight.delete(pending);
    }
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
      await this.#writeAll(handle, 'discard', chunk, offset + done);
    }
  }

  async #writeAll(handle: FileHandle, op: string, buf: Uint8Array, offset: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      let n: number;
      try {
        ({ bytesWritten: n } = await handle.write(buf, done, buf.length - done, offset + done));
      } catch (err) {
        throw fsError(this.name, op, err, offset, buf.length);
      }
      if (n === 0) {
        throw new IoError(this.name, op, `no progress after ${done} of ${buf.length} bytes`);
      }
      done += n;
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
