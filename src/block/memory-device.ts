/** A sparse in-memory BlockDevice, for tests and for scratch metadata. */

import { bytes } from '../util/index.js';
import {
  type BlockDevice,
  checkGrow,
  checkOpen,
  checkRange,
  checkWritable,
} from './block-device.js';

/** The unit of allocation: a page is allocated on its first write and freed by discard. */
const PAGE_SIZE = 4096;

export interface MemoryDeviceOptions {
  /** Refuse writes and grow; the device then only ever reads zeros. */
  readOnly?: boolean;
}

/**
 * A BlockDevice held in memory, in pages of 4096 bytes allocated on first write. Pages that
 * were never written read as zeros, so a large device costs nothing until it is written;
 * `discard()` frees the pages wholly inside its range and zeros the parts of the others.
 * Every operation completes before its promise resolves, so `flush()` has nothing to wait
 * for; nothing survives the process.
 */
export class MemoryDevice implements BlockDevice {
  readonly name: string;
  readonly readOnly: boolean;
  #size: number;
  #closed = false;
  readonly #pages = new Map<number, Uint8Array>();

  /** Throws a RangeError unless `size` is a safe non-negative integer. */
  constructor(size: number, name = 'memory', options: MemoryDeviceOptions = {}) {
    this.#size = bytes(size);
    this.name = name;
    this.readOnly = options.readOnly ?? false;
  }

  get size(): number {
    return this.#size;
  }

  /** How many pages hold data: the device's memory cost is this times 4096 bytes. */
  get allocatedPages(): number {
    return this.#pages.size;
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    checkOpen(this.name, 'read', this.#closed);
    checkRange(this.name, 'read', offset, buf.length, this.#size);
    this.#copyOut(buf, offset);
  }

  /** See `BlockDevice.readNow`: memory never waits. */
  readNow(buf: Uint8Array, offset: number): boolean {
    if (this.#closed || offset < 0 || offset + buf.length > this.#size) return false;
    this.#copyOut(buf, offset);
    return true;
  }

  #copyOut(buf: Uint8Array, offset: number): void {
    this.#eachPage(offset, buf.length, (page, pageOffset, bufOffset, length) => {
      const target = buf.subarray(bufOffset, bufOffset + length);
      if (page === undefined) target.fill(0);
      else target.set(page.subarray(pageOffset, pageOffset + length));
    });
  }

  /** See `BlockDevice.writeNow`: memory never waits. */
  writeNow(buf: Uint8Array, offset: number): boolean {
    if (this.#closed || this.readOnly || offset < 0 || offset + buf.length > this.#size) {
      return false;
    }
    this.#copyIn(buf, offset);
    return true;
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    checkOpen(this.name, 'write', this.#closed);
    checkWritable(this, 'write');
    checkRange(this.name, 'write', offset, buf.length, this.#size);
    this.#copyIn(buf, offset);
  }

  #copyIn(buf: Uint8Array, offset: number): void {
    this.#eachPage(offset, buf.length, (page, pageOffset, bufOffset, length, index) => {
      let target = page;
      if (target === undefined) {
        target = new Uint8Array(PAGE_SIZE);
        this.#pages.set(index, target);
      }
      target.set(buf.subarray(bufOffset, bufOffset + length), pageOffset);
    });
  }

  /** Drops the whole pages inside the range and zeros the partial pages at its edges. */
  async discard(offset: number, length: number): Promise<void> {
    checkOpen(this.name, 'discard', this.#closed);
    checkWritable(this, 'discard');
    checkRange(this.name, 'discard', offset, length, this.#size);
    this.#eachPage(offset, length, (page, pageOffset, _bufOffset, chunk, index) => {
      if (chunk === PAGE_SIZE) this.#pages.delete(index);
      else page?.fill(0, pageOffset, pageOffset + chunk);
    });
  }

  async flush(): Promise<void> {
    checkOpen(this.name, 'flush', this.#closed);
  }

  async grow(newSize: number): Promise<void> {
    checkOpen(this.name, 'grow', this.#closed);
    checkWritable(this, 'grow');
    checkGrow(this.name, newSize, this.#size);
    this.#size = newSize;
  }

  /** Frees every page. Closing twice is harmless; any other call after it fails. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#pages.clear();
  }

  /** Calls `visit` for each page the byte range touches, in order. */
  #eachPage(
    offset: number,
    length: number,
    visit: (
      page: Uint8Array | undefined,
      pageOffset: number,
      bufOffset: number,
      length: number,
      index: number,
    ) => void,
  ): void {
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const index = Math.floor(position / PAGE_SIZE);
      const pageOffset = position - index * PAGE_SIZE;
      const chunk = Math.min(PAGE_SIZE - pageOffset, length - done);
      visit(this.#pages.get(index), pageOffset, done, chunk, index);
      done += chunk;
    }
  }
}
