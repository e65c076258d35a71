/** The BlockDevice ops table and the range check every implementation shares. */

import { IoError } from '../util/index.js';

/**
 * A device addressed in bytes. It orders nothing among the operations in flight: two
 * overlapping writes, or a read, write or discard that overlap, may take effect in either
 * order, and a discard does not wait for the writes in flight to its range. Callers that
 * need an order wait for one operation before issuing the next (the pool keeps a data
 * block's I/O, unmap, discard and reuse apart with its cells and its in-flight set).
 *
 * A write that has completed is visible to every later read, but it is durable only once a
 * later `flush()` has completed. Every failure is an `IoError` naming the device and the
 * operation.
 */
/** A file descriptor the device's bytes are read from, from position `base` on. */
export interface ReadFile {
  readonly fd: number;
  readonly base: number;
}

export interface BlockDevice {
  /** For messages: the file path, or "memory". */
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  readonly readOnly: boolean;
  /** Fills all of `buf` from byte `offset`; the range must lie inside the device. */
  read(buf: Uint8Array, offset: number): Promise<void>;
  /**
   * Fills all of `buf` from byte `offset` at once, if the device can without waiting (a
   * file's page cache): true when done; false when it would have had to wait or failed, and
   * then `buf` holds anything and the caller reads again with `read`. Never blocks.
   * Optional: a device that cannot leaves it out.
   */
  readNow?(buf: Uint8Array, offset: number): boolean;
  /**
   * Where the device's bytes are read with positional reads (the page cache in between),
   * while the device is open: byte `o` of the device is byte `base + o` of `fd`; undefined
   * when there is none (memory, a device of several segments, a closed device). Whoever
   * reads through it must be done before the device closes. Optional: a device that cannot
   * leaves it out.
   */
  readFile?(): ReadFile | undefined;
  /** Writes all of `buf` at byte `offset`; the range must lie inside the device. */
  write(buf: Uint8Array, offset: number): Promise<void>;
  /**
   * `write`, for data the caller does not expect to read back soon (a client streaming
   * large writes): the device may write it around its cache (a file's page cache, through
   * O_DIRECT), which costs later reads of it a trip to the disk. Same contract as `write`.
   * Optional: callers fall back to `write`.
   */
  writeUncached?(buf: Uint8Array, offset: number): Promise<void>;
  /**
   * Writes all of `buf` at byte `offset` at once, if the device can without waiting for
   * the disk (a file's page cache, an idle file): true when written, complete as it returns
   * (never in flight); false when it must go through `write` (part of it may have been
   * written, which `write` writes again). Throws as `write` rejects when the write failed.
   * Optional: a device that cannot leaves it out.
   */
  writeNow?(buf: Uint8Array, offset: number): boolean;
  /**
   * Turns the kernel's readahead off for this device's reads (a page cache that reads more
   * than asked, in the expectation of sequential reads), for a device whose readers read
   * ahead themselves: true when the kernel took it, false when it could not (closed, no
   * addon). Optional: a device without readahead leaves it out.
   */
  stopReadahead?(): boolean;
  /**
   * Makes every write (and discard) that completed before the call durable (fdatasync).
   * Writes still in flight need not be covered: callers wait for what must be durable.
   */
  flush(): Promise<void>;
  /**
   * Grows the device to `newSize` bytes (files: ftruncate; new space reads as zeros).
   * Never shrinks.
   */
  grow(newSize: number): Promise<void>;
  /**
   * Discards `length` bytes from byte `offset`: once it resolves, every read of that range
   * returns zeros, and the device may give the space back to its host (files: punch a
   * hole). The range must lie inside the device, and the device must be writable. Callers
   * discard only ranges whose contents they no longer need and to which nothing is in
   * flight (see above). Like a write, it is durable only after a later `flush()`.
   *
   * Optional: a device that cannot discard leaves it out, and callers test for it
   * (`device.discard !== undefined`), writing zeros themselves if they need them.
   */
  discard?(offset: number, length: number): Promise<void>;
  /**
   * Whether `discard()` gives the space back (punches holes) rather than writing zeros, so
   * that discarding a large free range is cheap. Left out: it does.
   */
  readonly punchesHoles?: boolean;
  close(): Promise<void>;
}

/**
 * Throws an `IoError` unless `length` bytes from `offset` lie inside a device of `size`
 * bytes. Offset and length must be safe non-negative integers; an empty range at the end
 * is allowed.
 */
export function checkRange(
  name: string,
  op: string,
  offset: number,
  length: number,
  size: number,
): void {
  if (
    !Number.isSafeInteger(offset) ||
    offset < 0 ||
    !Number.isSafeInteger(length) ||
    length < 0 ||
    offset + length > size
  ) {
    throw new IoError(
      name,
      op,
      `range of ${length} bytes at offset ${offset} is outside the device of ${size} bytes`,
    );
  }
}

/** Throws an `IoError` when `op` would change a read-only device. */
export function checkWritable(device: Pick<BlockDevice, 'name' | 'readOnly'>, op: string): void {
  if (device.readOnly) {
    throw new IoError(device.name, op, 'the device is read-only', {
      hint: 'open it for writing',
    });
  }
}

/**
 * Throws an `IoError` unless `newSize` is a safe integer no smaller than `size`: devices
 * grow and never shrink.
 */
export function checkGrow(name: string, newSize: number, size: number): void {
  if (!Number.isSafeInteger(newSize) || newSize < size) {
    throw new IoError(name, 'grow', `cannot grow from ${size} bytes to ${newSize} bytes`, {
      hint: 'a device never shrinks',
    });
  }
}

/** Throws an `IoError` when `op` is called after `close()`. */
export function checkOpen(name: string, op: string, closed: boolean): void {
  if (closed) throw new IoError(name, op, 'the device is closed');
}
