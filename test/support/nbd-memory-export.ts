/**
 * An NBD `Export` over a sparse in-memory byte store, for tests: data lives in 64 KiB blocks
 * allocated on first write, so `blockStatus` reports unwritten (and trimmed) blocks as holes,
 * the way a thin device reports unmapped ranges. Counters record what the server asked for,
 * and `failNext` injects one failure into the next call of a verb.
 */

import type { Export, Extent } from '../../src/nbd/index.js';
import { ReadOnlyError, UnavailableError } from '../../src/util/index.js';

export const ALLOCATION_BLOCK = 64 * 1024;

export interface MemoryExportOptions {
  name?: string;
  description?: string;
  size: number;
  readOnly?: boolean;
  canFlush?: boolean;
  canTrim?: boolean;
  canWriteZeroes?: boolean;
  canFastZero?: boolean;
  canCache?: boolean;
  canMultiConn?: boolean;
  minBlockSize?: number;
  preferredBlockSize?: number;
  maxBlockSize?: number;
}

type Verb = 'read' | 'write' | 'flush' | 'trim' | 'writeZeroes' | 'cache' | 'blockStatus';

export class MemoryExport implements Export {
  readonly name: string;
  readonly description?: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  readonly canTrim: boolean;
  readonly canWriteZeroes: boolean;
  readonly canFastZero: boolean;
  readonly canCache: boolean;
  readonly canMultiConn: boolean;
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  readonly maxBlockSize: number;

  /** Allocated blocks by index; a missing block reads as zeroes. */
  readonly blocks = new Map<number, Buffer>();
  /** How many times each verb was called. */
  readonly calls: Record<Verb, number> = {
    read: 0,
    write: 0,
    flush: 0,
    trim: 0,
    writeZeroes: 0,
    cache: 0,
    blockStatus: 0,
  };
  /** Errors to throw from the next call of a verb (each used once). */
  readonly failNext = new Map<Verb, Error>();
  /** Delay in ms before each call completes, to keep requests in flight. */
  delayMs = 0;

  constructor(options: MemoryExportOptions) {
    this.name = options.name ?? '';
    if (options.description !== undefined) this.description = options.description;
    this.size = options.size;
    this.readOnly = options.readOnly ?? false;
    this.canFlush = options.canFlush ?? true;
    this.canTrim = options.canTrim ?? true;
    this.canWriteZeroes = options.canWriteZeroes ?? true;
    this.canFastZero = options.canFastZero ?? true;
    this.canCache = options.canCache ?? true;
    this.canMultiConn = options.canMultiConn ?? true;
    this.minBlockSize = options.minBlockSize ?? 512;
    this.preferredBlockSize = options.preferredBlockSize ?? 4096;
    this.maxBlockSize = options.maxBlockSize ?? 32 * 1024 * 1024;
  }

  /** Bytes held in allocated blocks. */
  get allocatedBytes(): number {
    return this.blocks.size * ALLOCATION_BLOCK;
  }

  /** A copy of the whole export's contents. */
  contents(): Buffer {
    const out = Buffer.alloc(this.size);
    for (const [index, block] of this.blocks) block.copy(out, index * ALLOCATION_BLOCK);
    return out;
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    await this.enter('read');
    this.forEachPart(offset, buf.length, (block, _index, start, length, done) => {
      if (block === undefined) buf.fill(0, done, done + length);
      else block.copy(buf, done, start, start + length);
    });
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    await this.enter('write', true);
    this.forEachPart(offset, buf.length, (_block, index, start, length, done) => {
      buf.copy(this.allocate(index), start, done, done + length);
    });
  }

  async flush(): Promise<void> {
    await this.enter('flush');
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.enter('trim', true);
    this.zero(offset, length, false);
  }

  async writeZeroes(
    offset: number,
    length: number,
    options: { noHole: boolean; fastZero: boolean },
  ): Promise<void> {
    if (options.fastZero && options.noHole) {
      throw new UnavailableError('zeroing without holes is not faster than writing');
    }
    await this.enter('writeZeroes', true);
    this.zero(offset, length, options.noHole);
  }

  async cache(): Promise<void> {
    await this.enter('cache');
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    await this.enter('blockStatus');
    const extents: Extent[] = [];
    this.forEachPart(offset, length, (block, _index, _start, part) => {
      const hole = block === undefined;
      const last = extents[extents.length - 1];
      if (last !== undefined && last.hole === hole) last.length += part;
      else extents.push({ length: part, hole, zero: hole });
    });
    return extents;
  }

  /** Zeroes a range: whole blocks are deallocated unless `noHole`, partial ones cleared. */
  private zero(offset: number, length: number, noHole: boolean): void {
    this.forEachPart(offset, length, (block, index, start, part) => {
      if (part === ALLOCATION_BLOCK && !noHole) this.blocks.delete(index);
      else if (block !== undefined) block.fill(0, start, start + part);
      else if (noHole) this.allocate(index);
    });
  }

  private allocate(index: number): Buffer {
    let block = this.blocks.get(index);
    if (block === undefined) {
      block = Buffer.alloc(ALLOCATION_BLOCK);
      this.blocks.set(index, block);
    }
    return block;
  }

  /** Calls `fn` for each block-sized piece of a range, with its offset into the range. */
  private forEachPart(
    offset: number,
    length: number,
    fn: (
      block: Buffer | undefined,
      index: number,
      start: number,
      length: number,
      done: number,
    ) => void,
  ): void {
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / ALLOCATION_BLOCK);
      const start = at % ALLOCATION_BLOCK;
      const part = Math.min(ALLOCATION_BLOCK - start, length - done);
      fn(this.blocks.get(index), index, start, part, done);
      done += part;
    }
  }

  private async enter(verb: Verb, mutating = false): Promise<void> {
    this.calls[verb]++;
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    else await Promise.resolve();
    const failure = this.failNext.get(verb);
    if (failure !== undefined) {
      this.failNext.delete(verb);
      throw failure;
    }
    if (mutating && this.readOnly) throw new ReadOnlyError(`export '${this.name}' is read-only`);
  }
}
