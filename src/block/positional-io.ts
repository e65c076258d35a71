/**
 * The data path of a device over one open file descriptor, shared by FileDevice (a file,
 * loop mode) and BlockDevDevice (a block device or a region of one, direct mode): byte `o`
 * of the device is byte `base + o` of the descriptor, read and written with buffered
 * positional I/O, the page cache in between.
 *
 * - Reads and writes first try RWF_NOWAIT through the addon thinp_nowait (synchronously,
 *   on the event loop): the kernel copies from or into the page cache only when it can
 *   without waiting, and refuses at once otherwise (EAGAIN), so the event loop never waits
 *   for the disk. Where it is not offered at all (EOPNOTSUPP: ext4's and block devices'
 *   buffered writes, a kernel without it), attempts in that direction stop.
 * - Where RWF_NOWAIT writes nothing, a write of at most 64 KiB covering whole pages, issued
 *   while no other write or discard is in flight, is written on the spot with a plain
 *   `pwrite`: it lands in the page cache (no page is read to merge) and costs less than the
 *   two thread wake-ups of a threadpool job. Only while idle, so that a burst never waits on
 *   the event loop behind one slow write.
 * - The other writes go to the threadpool batched: those issued in one turn of the event
 *   loop (up to 1 MiB) as one job of the addon thinp_batch, submitted by a
 *   `process.nextTick`, one thread wake-up and one completion per batch. Each is in flight
 *   until its job ends.
 * - `writeUncached` writes around the page cache, through a second descriptor the device
 *   opened with O_DIRECT: for data the caller does not expect to read back soon (a client
 *   streaming large writes), which would otherwise cost a fresh page-cache page per 4 KiB
 *   and its writeback later. Such writes go to the threadpool in batches of their own (the
 *   addon merges neighbours into runs of up to 1 MiB, each copied into an aligned buffer
 *   and written with one pwrite). The kernel keeps the two paths coherent: a direct write
 *   first writes back and drops the cached pages of its range, and drops them again once
 *   done, so a later buffered read sees it. That holds while no buffered write to the same
 *   pages is in flight beside it (the kernel would then report EIO at the next fsync), which
 *   the BlockDevice contract already excludes. A range off whole pages, a filesystem that
 *   refuses O_DIRECT (EINVAL) or a missing addon: a buffered write instead.
 * - `stopReadahead` turns the kernel's readahead off for the descriptor (POSIX_FADV_RANDOM),
 *   for a device whose readers read ahead themselves.
 * - `inFlight` holds the writes and discards in flight with the ranges they change, for the
 *   device's `flush`, `discard` and `close`.
 *
 * It does not own the descriptors: the device opens and closes them, and passes them in.
 */

import { constants, writeSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { getSystemErrorName } from 'node:util';
import { IoError } from '../util/index.js';
import { type WriteBatch, writeBatch } from './batch-native.js';
import { errnoCode, fsError } from './fs-errors.js';
import { type NowaitIo, nowaitIo } from './nowait-native.js';

/** A transfer with RWF_NOWAIT that the kernel or filesystem does not offer (negated). */
const NOWAIT_UNSUPPORTED = -95; // -EOPNOTSUPP
/** A failed write's result when the batch could not run at all (negated EIO). */
const EIO = -5;
/** A batch of writes handed to the threadpool at once holds at most this many bytes. */
const BATCH_BYTES = 1024 * 1024;
/** The largest write done on the spot while the device is idle. */
const AT_ONCE_MAX = 64 * 1024;
/** Writes done on the spot cover whole pages, so the kernel never reads a page to merge. */
const PAGE = 4096;
/** O_DIRECT writes start and end on this multiple (a page: every device's sector divides it). */
const DIRECT_ALIGN = PAGE;

/**
 * `path` opened for writing with O_DIRECT (for `writeUncached`), or undefined where that is
 * refused (a filesystem without O_DIRECT) or fails: the writes then stay buffered.
 */
export async function openDirect(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, constants.O_RDWR | constants.O_DIRECT);
  } catch {
    return undefined;
  }
}

/** Writes queued for one threadpool job (`writeBatch`), with how each one settles. */
interface WriteQueue {
  buffers: Uint8Array[];
  offsets: number[];
  settle: Array<(result: number) => void>;
  bytes: number;
}

export interface PositionalIoOptions {
  /** Try RWF_NOWAIT first (see the module comment); default true where the addon is built. */
  nowait?: boolean;
  /** Batch a turn's writes into one threadpool job; default true where the addon is built. */
  batch?: boolean;
}

/** A range being changed: a write or a discard in flight. */
export interface Change {
  offset: number;
  length: number;
}

export class PositionalIo {
  /** The writes and discards in flight, with the byte range each changes. */
  readonly inFlight = new Map<Promise<void>, Change>();
  #nowaitReads: NowaitIo | undefined;
  #nowaitWrites: NowaitIo | undefined;
  readonly #writeBatch: WriteBatch | undefined;
  /** This turn's batch of buffered writes, and of writes through O_DIRECT. */
  #queue: WriteQueue | undefined;
  #directQueue: WriteQueue | undefined;
  /** False once the filesystem has refused an O_DIRECT write (EINVAL). */
  #direct = true;

  /** `name` names the device in errors; `base` is where byte 0 of the device lies. */
  constructor(
    readonly name: string,
    readonly base: number,
    options: PositionalIoOptions = {},
  ) {
    const nowait = options.nowait ?? true;
    this.#nowaitReads = nowait ? nowaitIo : undefined;
    this.#nowaitWrites = nowait ? nowaitIo : undefined;
    this.#writeBatch = (options.batch ?? true) ? writeBatch : undefined;
  }

  /**
   * `BlockDevice.stopReadahead` for `fd` (undefined once closed): POSIX_FADV_RANDOM through
   * the addon thinp_nowait, whether or not the device uses it for transfers. True when the
   * kernel took the advice.
   */
  stopReadahead(fd: number | undefined): boolean {
    return fd !== undefined && nowaitIo !== undefined && nowaitIo.adviseRandom(fd) === 0;
  }

  /**
   * Fills `buf` from `offset`: what the page cache holds at once, the rest through `handle`
   * (the threadpool). Past the descriptor's end: zeros (`pastEnd` 'zeros', a file shortened
   * behind the device's back) or an IoError ('fail', a block device ends where it ends).
   */
  async read(
    handle: FileHandle,
    buf: Uint8Array,
    offset: number,
    pastEnd: 'zeros' | 'fail',
  ): Promise<void> {
    let done = this.readNowait(handle.fd, buf, offset);
    while (done < buf.length) {
      let n: number;
      try {
        const at = this.base + offset + done;
        ({ bytesRead: n } = await handle.read(buf, done, buf.length - done, at));
      } catch (err) {
        throw fsError(this.name, 'read', err, offset, buf.length);
      }
      if (n === 0 && pastEnd === 'zeros') {
        buf.fill(0, done);
        return;
      }
      if (n === 0) throw new IoError(this.name, 'read', `the device ended at ${offset + done}`);
      done += n;
    }
  }

  /** `BlockDevice.readNow` over `fd` (undefined once closed), for a device of `size` bytes. */
  readNow(fd: number | undefined, size: number, buf: Uint8Array, offset: number): boolean {
    if (fd === undefined || this.#nowaitReads === undefined) return false;
    if (offset < 0 || offset + buf.length > size) return false;
    return this.readNowait(fd, buf, offset) === buf.length;
  }

  /** `BlockDevice.writeNow` over `fd` (undefined once closed), for a device of `size` bytes. */
  writeNow(fd: number | undefined, size: number, buf: Uint8Array, offset: number): boolean {
    if (fd === undefined) return false;
    if (offset < 0 || offset + buf.length > size) return false;
    return this.writeWithoutWaiting(fd, buf, offset) === buf.length;
  }

  /** Reads what the page cache holds of the range at once; returns the bytes read. */
  readNowait(fd: number, buf: Uint8Array, offset: number): number {
    const io = this.#nowaitReads;
    let done = 0;
    while (io !== undefined && done < buf.length) {
      const n = io.readNowait(fd, done === 0 ? buf : buf.subarray(done), this.base + offset + done);
      if (n === NOWAIT_UNSUPPORTED) this.#nowaitReads = undefined;
      if (n <= 0) break;
      done += n;
    }
    return done;
  }

  /**
   * Writes `buf` at `offset`: what can be written without waiting at once, the rest through
   * the threadpool (batched) or `handle`, in flight until written.
   */
  async write(handle: FileHandle, buf: Uint8Array, offset: number): Promise<void> {
    const done = this.writeWithoutWaiting(handle.fd, buf, offset);
    if (done === buf.length) return;
    const rest = buf.subarray(done);
    const at = offset + done;
    const pending =
      this.#writeBatch === undefined
        ? this.writeAll(handle, 'write', rest, at)
        : this.#queueWrite(handle.fd, rest, at, false);
    await this.#track(pending, offset, buf.length);
  }

  /**
   * Writes `buf` at `offset` around the page cache, through `direct` (the device's
   * descriptor opened with O_DIRECT, undefined when it has none), in flight until written;
   * as `write` when the range is not on whole pages or O_DIRECT is not to be had.
   */
  async writeUncached(
    handle: FileHandle,
    direct: number | undefined,
    buf: Uint8Array,
    offset: number,
  ): Promise<void> {
    const at = this.base + offset;
    const aligned = at % DIRECT_ALIGN === 0 && buf.length % DIRECT_ALIGN === 0 && buf.length > 0;
    if (direct === undefined || this.#writeBatch === undefined || !this.#direct || !aligned) {
      return this.write(handle, buf, offset);
    }
    const pending = this.#queueWrite(direct, buf, offset, true).catch((err: unknown) => {
      if (errnoCode((err as Error).cause) !== 'EINVAL') throw err;
      this.#direct = false;
      return this.writeAll(handle, 'write', buf, offset);
    });
    await this.#track(pending, offset, buf.length);
  }

  /** Whether `writeUncached` still goes around the page cache (no EINVAL seen). */
  get uncachedWrites(): boolean {
    return this.#direct && this.#writeBatch !== undefined;
  }

  /**
   * What can be written of `buf` without a threadpool job: RWF_NOWAIT's part, or all of it
   * on the spot when RWF_NOWAIT wrote nothing and the device is idle; the bytes written.
   */
  writeWithoutWaiting(fd: number, buf: Uint8Array, offset: number): number {
    const done = this.#writeNowait(fd, buf, offset);
    if (done === 0 && this.#writeAtOnce(fd, buf, offset)) return buf.length;
    return done;
  }

  /** Writes all of `buf` at `offset` through `handle` (the threadpool), looping. */
  async writeAll(handle: FileHandle, op: string, buf: Uint8Array, offset: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      let n: number;
      try {
        const at = this.base + offset + done;
        ({ bytesWritten: n } = await handle.write(buf, done, buf.length - done, at));
      } catch (err) {
        throw fsError(this.name, op, err, offset, buf.length);
      }
      if (n === 0) {
        throw new IoError(this.name, op, `no progress after ${done} of ${buf.length} bytes`);
      }
      done += n;
    }
  }

  /** The changes in flight that overlap the range. */
  #overlapping(offset: number, length: number): Promise<void>[] {
    const found: Promise<void>[] = [];
    for (const [pending, range] of this.inFlight) {
      if (range.offset < offset + length && offset < range.offset + range.length) {
        found.push(pending);
      }
    }
    return found;
  }

  /**
   * Runs `work`, a change of `length` bytes at `offset` other than a write (a discard), once
   * the changes in flight that overlap it have finished, whether or not they failed; it is
   * in flight meanwhile, as a write is.
   */
  async change(offset: number, length: number, work: () => Promise<void>): Promise<void> {
    const overlapping = this.#overlapping(offset, length);
    const changing = (async () => {
      await Promise.allSettled(overlapping);
      await work();
    })();
    await this.#track(changing, offset, length);
  }

  /** Awaits `pending`, a change to `length` bytes at `offset`, keeping it in flight meanwhile. */
  async #track(pending: Promise<void>, offset: number, length: number): Promise<void> {
    this.inFlight.set(pending, { offset, length });
    try {
      await pending;
    } finally {
      this.inFlight.delete(pending);
    }
  }

  /** Resolves once every change now in flight has finished, whether or not it failed. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.inFlight.keys()]);
  }

  /** Writes what RWF_NOWAIT takes at once; returns the bytes written. */
  #writeNowait(fd: number, buf: Uint8Array, offset: number): number {
    const io = this.#nowaitWrites;
    let done = 0;
    while (io !== undefined && done < buf.length) {
      const n = io.writeNowait(
        fd,
        done === 0 ? buf : buf.subarray(done),
        this.base + offset + done,
      );
      if (n === NOWAIT_UNSUPPORTED) this.#nowaitWrites = undefined;
      if (n <= 0) break;
      done += n;
    }
    return done;
  }

  /**
   * Writes `buf` on the spot when the device is idle (nothing in flight, no batch gathered),
   * the write is small and covers whole pages; false otherwise.
   */
  #writeAtOnce(fd: number, buf: Uint8Array, offset: number): boolean {
    const idle =
      this.inFlight.size === 0 && this.#queue === undefined && this.#directQueue === undefined;
    if (this.#writeBatch === undefined || !idle) return false;
    const at = this.base + offset;
    if (buf.length > AT_ONCE_MAX || at % PAGE !== 0 || buf.length % PAGE !== 0) return false;
    for (let done = 0; done < buf.length; ) {
      let n: number;
      try {
        n = writeSync(fd, buf, done, buf.length - done, at + done);
      } catch (err) {
        throw fsError(this.name, 'write', err, offset, buf.length);
      }
      if (n <= 0) throw new IoError(this.name, 'write', `no progress after ${done} bytes`);
      done += n;
    }
    return true;
  }

  /**
   * Adds a write to this turn's batch (of writes through O_DIRECT when `direct`), started by
   * a `process.nextTick`.
   */
  #queueWrite(fd: number, buf: Uint8Array, offset: number, direct: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let queue = direct ? this.#directQueue : this.#queue;
      if (queue === undefined || queue.bytes + buf.length > BATCH_BYTES) {
        const fresh: WriteQueue = { buffers: [], offsets: [], settle: [], bytes: 0 };
        if (direct) this.#directQueue = fresh;
        else this.#queue = fresh;
        queue = fresh;
        process.nextTick(() => this.#submit(fd, fresh, direct));
      }
      queue.buffers.push(buf);
      queue.offsets.push(this.base + offset);
      queue.bytes += buf.length;
      queue.settle.push((n) => {
        if (n === buf.length) resolve();
        else reject(this.#batchError(n, offset, buf.length));
      });
    });
  }

  /** Hands `queue` to the threadpool; a job that cannot be queued fails its writes (EIO). */
  #submit(fd: number, queue: WriteQueue, direct: boolean): void {
    if (this.#queue === queue) this.#queue = undefined;
    if (this.#directQueue === queue) this.#directQueue = undefined;
    const settle = (results: readonly number[]) => {
      for (const [i, s] of queue.settle.entries()) s(results[i] ?? EIO);
    };
    try {
      const align = direct ? DIRECT_ALIGN : undefined;
      (this.#writeBatch as WriteBatch)(fd, queue.buffers, queue.offsets, settle, align);
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
}
