/**
 * ThinDevice: byte-addressed I/O on one thin device of a pool. Unmapped blocks read as
 * zeros; the first write to a block allocates it; a write to a shared block copies that one
 * block first. Work on one block is serialized (a cell per block, discards included);
 * different blocks run concurrently. Changes pass the device's quiesce gate, and reads and
 * in-place writes are entries of the pool's in-flight set (see data-path.ts).
 */

import { BadInputError, type ReadPlan } from '../util/index.js';
import { cellKey, type DataPath } from './data-path.js';
import { type BlockPiece, splitIntoBlocks, wholeBlocks } from './io-plan.js';

/** Copies and zero-fills move at most this much at once, whatever the block size. */
const CHUNK = 1024 * 1024;

const DONE: Promise<void> = Promise.resolve();

/**
 * How a piece is written: `uncached`, around the data device's cache (a large write: see
 * `DataPath.writesUncached`); `allocate`, an unmapped block is provisioned even for zeros.
 */
interface PieceWrite {
  readonly allocate: boolean;
  readonly uncached: boolean;
}
const CACHED: PieceWrite = { allocate: true, uncached: false };
const UNCACHED: PieceWrite = { allocate: true, uncached: true };
/** Zeros over an unmapped block leave it unmapped. */
const ZEROS: PieceWrite = { allocate: false, uncached: false };

/** The runs `mapNow` finds, (data byte or -1, length) pairs; grown on demand, shared. */
let runs = new Float64Array(2 * 64);

/** Whether a piece from data byte `from` (-1: a hole) extends the run (`runFrom`, `runLength`). */
function continuesRun(runFrom: number, runLength: number, from: number): boolean {
  return from < 0 ? runFrom < 0 : runFrom >= 0 && runFrom + runLength === from;
}

export interface WriteOptions {
  /** Force unit access: the write is durable when it completes (commits the pool). */
  fua?: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /** Keep the range allocated (write zeros) instead of unmapping whole blocks. */
  noHole?: boolean;
}

/** A run of bytes that is allocated (mapped) or a hole. */
export interface Extent {
  offset: number;
  length: number;
  mapped: boolean;
}

export class ThinDevice {
  readonly pool: DataPath;
  readonly id: number;
  readonly size: number;

  constructor(pool: DataPath, id: number, size: number) {
    this.pool = pool;
    this.id = id;
    this.size = size;
  }

  /** Fills `buf` from byte `offset`. */
  read(buf: Uint8Array, offset: number): Promise<void> {
    try {
      this.checkRange(offset, buf.length, 'read');
    } catch (err) {
      return Promise.reject(err);
    }
    this.pool.counters.reads++;
    if (this.readNow(buf, offset)) return DONE;
    return this.pool.inFlight(() => this.readMapped(buf, offset));
  }

  /**
   * `read` done at once, with no promise, when it can be (see `readNow` below): true when
   * `buf` is filled, false when it must be read with `read`.
   */
  readAtOnce(buf: Uint8Array, offset: number): boolean {
    this.checkRange(offset, buf.length, 'read');
    if (!this.readNow(buf, offset)) return false;
    this.pool.counters.reads++;
    return true;
  }

  /**
   * Plans a read of `length` bytes at `offset` into `plan` (see ReadPlan), when every
   * mapping is known without waiting and the data device has a file to read from: true
   * when planned, holding an entry of the in-flight set until `plan.release()`; false when
   * it must be read with `read` (the plan is left empty).
   */
  planRead(offset: number, length: number, plan: ReadPlan): boolean {
    this.checkRange(offset, length, 'read');
    const file = this.pool.data.readFile?.();
    if (file === undefined) return false;
    const count = this.mapNow(offset, length);
    if (count < 0) return false;
    plan.reset(count);
    for (let i = 0; i < count; i++) {
      const from = runs[2 * i] as number;
      plan.add(from < 0 ? -1 : file.fd, from < 0 ? 0 : file.base + from, runs[2 * i + 1] as number);
    }
    plan.hold(this.pool.enterIo(), this.pool.leaveIo);
    this.pool.counters.reads++;
    return true;
  }

  /**
   * The read done at once, when every mapping is known without waiting and every mapped
   * piece comes from the data device without waiting (cached metadata, page cache): true
   * when done, false when `buf` must be read the slow way. No await, so no entry in the
   * in-flight set is needed (data-path.ts).
   */
  private readNow(buf: Uint8Array, offset: number): boolean {
    const data = this.pool.data;
    if (data.readNow === undefined) return false;
    const count = this.mapNow(offset, buf.length);
    if (count < 0) return false;
    let at = 0;
    for (let i = 0; i < count; i++) {
      const from = runs[2 * i] as number;
      const n = runs[2 * i + 1] as number;
      if (from < 0) buf.fill(0, at, at + n);
      else if (!data.readNow(buf.subarray(at, at + n), from)) return false;
      at += n;
    }
    return true;
  }

  /**
   * The runs of [offset, offset + length) in `runs`, from the mappings known at once: a pair
   * (byte of the data device, or -1 for a hole; length) per run, pieces on neighbouring
   * data blocks (and neighbouring holes) merged. Returns the number of runs, or -1 when a
   * mapping is not known without waiting. `runs` is shared: use it before any await.
   */
  private mapNow(offset: number, length: number): number {
    const B = this.pool.blockSize;
    const most = 2 * (Math.ceil(length / B) + 1);
    if (runs.length < most) runs = new Float64Array(most);
    let count = 0;
    let at = 0;
    while (at < length) {
      const pos = offset + at;
      const vblock = Math.floor(pos / B);
      const inner = pos - vblock * B;
      const n = Math.min(B - inner, length - at);
      const m = this.pool.lookupNow(this.id, vblock);
      if (m === null) return -1;
      const from = m === undefined ? -1 : m.dataBlock * B + inner;
      const last = 2 * (count - 1);
      if (count > 0 && continuesRun(runs[last] as number, runs[last + 1] as number, from)) {
        runs[last + 1] = (runs[last + 1] as number) + n;
      } else {
        runs[2 * count] = from;
        runs[2 * count + 1] = n;
        count++;
      }
      at += n;
    }
    return count;
  }

  private async readMapped(buf: Uint8Array, offset: number): Promise<void> {
    const B = this.pool.blockSize;
    const pieces = splitIntoBlocks(offset, buf.length, B);
    const mappings = await Promise.all(pieces.map((p) => this.pool.lookup(this.id, p.vblock)));
    // Neighbouring pieces on neighbouring data blocks (as a sequential write leaves them)
    // become one read of the data device.
    const reads: Array<Promise<void>> = [];
    for (let i = 0; i < pieces.length; ) {
      const p = pieces[i] as BlockPiece;
      const m = mappings[i];
      let j = i + 1;
      if (m === undefined) {
        buf.fill(0, p.at, p.at + p.length);
        i = j;
        continue;
      }
      while (j < pieces.length && mappings[j]?.dataBlock === m.dataBlock + (j - i)) j++;
      const last = pieces[j - 1] as BlockPiece;
      const dst = buf.subarray(p.at, last.at + last.length);
      reads.push(this.pool.data.read(dst, m.dataBlock * B + p.inner));
      i = j;
    }
    await Promise.all(reads);
  }

  /**
   * `write` done at once, with no promise, when it can be: true when written, false when it
   * must be written with `write`. That is a write within one block whose mapping is known
   * without waiting, with no snapshot quiescing the device, nothing queued on the block's
   * cell, and a data device that writes it without waiting (`BlockDevice.writeNow`), and not
   * so large that it goes around the data device's cache (`DataPath.writesUncached`); and
   * either an overwrite in place (mapped, not shared: no allocation, no copy, no metadata
   * change) or the first write to an unmapped block that the pool provisions at once
   * (`DataPath.provisionAtOnce`), when no part of the new block needs zeroing. With no await
   * from the lookup to the write, nothing can free, copy or map the block in between: no
   * cell and no in-flight entry are needed. Throws what `write` would reject with when the
   * range is bad or the data device failed.
   */
  writeAtOnce(buf: Uint8Array, offset: number, options: WriteOptions = {}): boolean {
    this.checkRange(offset, buf.length, 'write');
    const pool = this.pool;
    const B = pool.blockSize;
    const vblock = Math.floor(offset / B);
    const data = pool.data;
    if (data.writeNow === undefined || options.fua === true || buf.length === 0) return false;
    if (Math.floor((offset + buf.length - 1) / B) !== vblock) return false;
    if (pool.writesUncached(buf.length)) return false;
    if (!pool.changeableNow(this.id) || pool.cells.has(cellKey(this.id, vblock))) return false;
    pool.checkWritable();
    const inner = offset - vblock * B;
    const m = pool.lookupNow(this.id, vblock);
    if (m === null || m?.shared === true) return false;
    if (m === undefined) {
      if (this.needsZeroing(inner, buf.length)) return false;
      const fill = (block: number) => data.writeNow?.(buf, block * B + inner) === true;
      if (!pool.provisionAtOnce(this.id, vblock, fill)) return false;
    } else if (!data.writeNow(buf, m.dataBlock * B + inner)) {
      return false;
    }
    pool.counters.writes++;
    return true;
  }

  /** Writes all of `buf` at byte `offset`. */
  async write(buf: Uint8Array, offset: number, options: WriteOptions = {}): Promise<void> {
    this.checkRange(offset, buf.length, 'write');
    this.pool.checkWritable();
    this.pool.counters.writes++;
    const pieces = splitIntoBlocks(offset, buf.length, this.pool.blockSize);
    const how = this.pool.writesUncached(buf.length) ? UNCACHED : CACHED;
    await this.pool.changing(this.id, () => {
      // One piece (most writes): its own promise, without an all-of-one.
      if (pieces.length === 1) return this.changeBlock(pieces[0] as BlockPiece, buf, how);
      return Promise.all(
        pieces.map((p) => this.changeBlock(p, buf.subarray(p.at, p.at + p.length), how)),
      ).then(() => undefined);
    });
    if (options.fua === true) await this.pool.commit();
  }

  /**
   * Unmaps the whole blocks of the range (their data blocks are freed when nothing else
   * maps them). Partial blocks at the edges keep their data: a discard is advisory.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.checkRange(offset, length, 'discard');
    const { first, end } = wholeBlocks(offset, length, this.pool.blockSize);
    if (end === first) return;
    await this.pool.changing(this.id, () => this.pool.unmapRange(this.id, first, end));
  }

  /** Makes the range read as zeros: whole blocks are unmapped unless `noHole`. */
  async writeZeroes(offset: number, length: number, options: ZeroOptions = {}): Promise<void> {
    this.checkRange(offset, length, 'write zeroes');
    this.pool.checkWritable();
    const B = this.pool.blockSize;
    const noHole = options.noHole === true;
    const { first, end } = wholeBlocks(offset, length, B);
    const pieces = splitIntoBlocks(offset, length, B).filter(
      (p) => noHole || p.vblock < first || p.vblock >= end,
    );
    await this.pool.changing(this.id, async () => {
      if (!noHole && end > first) await this.pool.unmapRange(this.id, first, end);
      const how = noHole ? CACHED : ZEROS;
      await Promise.all(pieces.map((p) => this.changeBlock(p, undefined, how)));
    });
    if (options.fua === true) await this.pool.commit();
  }

  /** Makes every completed write durable. */
  flush(): Promise<void> {
    return this.pool.commit();
  }

  /** The allocated runs and holes of [offset, offset + length), in order. */
  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    this.checkRange(offset, length, 'block status');
    const B = this.pool.blockSize;
    const end = offset + length;
    const extents: Extent[] = [];
    const push = (from: number, to: number, mapped: boolean) => {
      const a = Math.max(from, offset);
      const b = Math.min(to, end);
      if (b <= a) return;
      const last = extents[extents.length - 1];
      if (last !== undefined && last.mapped === mapped && last.offset + last.length === a) {
        last.length += b - a;
      } else {
        extents.push({ offset: a, length: b - a, mapped });
      }
    };
    let pos = Math.floor(offset / B);
    const endBlock = Math.ceil(end / B);
    while (pos < endBlock) {
      const next = await this.pool.nextMapping(this.id, pos);
      const mappedAt = next === undefined || next.vblock >= endBlock ? endBlock : next.vblock;
      push(pos * B, mappedAt * B, false);
      if (mappedAt >= endBlock) break;
      push(mappedAt * B, (mappedAt + 1) * B, true);
      pos = mappedAt + 1;
    }
    return extents;
  }

  // -------------------------------------------------------------------------------------

  /**
   * Writes `src` (or zeros when undefined) over piece `p`, holding its cell: in place when
   * the block is mapped and not shared; otherwise in a new block, filled fresh or copied from
   * the shared one. An unmapped block stays unmapped for zeros unless `how.allocate`.
   */
  private changeBlock(p: BlockPiece, src: Uint8Array | undefined, how: PieceWrite): Promise<void> {
    return this.pool.cells.run(cellKey(this.id, p.vblock), async () => {
      const B = this.pool.blockSize;
      const m = await this.pool.inFlight(async () => {
        // At once when the metadata allows (see lookupNow), else waiting for the lock.
        const now = this.pool.lookupNow(this.id, p.vblock);
        const found = now === null ? await this.pool.lookup(this.id, p.vblock) : now;
        if (found === undefined || found.shared) return found;
        // In place: no metadata changes; a FLUSH makes it durable.
        await this.put(found.dataBlock * B + p.inner, p.length, src, how.uncached);
        return 'done' as const;
      });
      if (m === 'done' || (m === undefined && src === undefined && !how.allocate)) return;
      await this.pool.provision(this.id, p.vblock, (block) =>
        m === undefined
          ? this.provision(block, p, src, how.uncached)
          : this.copyOnWrite(m.dataBlock, block, p, src, how.uncached),
      );
    });
  }

  /**
   * Whether a new block written `length` bytes from byte `inner` must have the rest zeroed:
   * a partial write, zeroing on (dm.zero_blocks), free blocks not known to read zero.
   */
  private needsZeroing(inner: number, length: number): boolean {
    const whole = inner === 0 && length === this.pool.blockSize;
    return !whole && this.pool.zeroBlocks && !this.pool.newBlocksAreZero;
  }

  /** A new block gets `src` at its place; the rest is zeroed unless it already reads zero. */
  private async provision(
    block: number,
    p: BlockPiece,
    src: Uint8Array | undefined,
    uncached: boolean,
  ): Promise<void> {
    const B = this.pool.blockSize;
    const base = block * B;
    if (this.needsZeroing(p.inner, p.length)) {
      await this.put(base, p.inner, undefined, uncached);
      await this.put(base + p.inner + p.length, B - p.inner - p.length, undefined, uncached);
    }
    if (src !== undefined || !this.pool.newBlocksAreZero) {
      await this.put(base + p.inner, p.length, src, uncached);
    }
  }

  /**
   * Copies data block `from` to `to`, with `src` (or zeros when undefined) in place of the
   * piece's range: the one block, in chunks, whatever the block size.
   */
  private async copyOnWrite(
    from: number,
    to: number,
    p: BlockPiece,
    src: Uint8Array | undefined,
    uncached: boolean,
  ): Promise<void> {
    const B = this.pool.blockSize;
    this.pool.counters.copies++;
    const chunk = Buffer.allocUnsafe(Math.min(B, CHUNK));
    for (let off = 0; off < B; off += chunk.length) {
      const n = Math.min(chunk.length, B - off);
      const view = chunk.subarray(0, n);
      const lo = Math.max(off, p.inner);
      const hi = Math.min(off + n, p.inner + p.length);
      const covered = hi - lo === n;
      if (!covered) await this.pool.data.read(view, from * B + off);
      if (hi > lo) {
        const dst = view.subarray(lo - off, hi - off);
        if (src === undefined) dst.fill(0);
        else dst.set(src.subarray(lo - p.inner, hi - p.inner));
      }
      await this.writeData(view, to * B + off, uncached);
    }
  }

  /** Writes `src` at byte `at` of the data device, or `length` zeros in chunks. */
  private put(
    at: number,
    length: number,
    src: Uint8Array | undefined,
    uncached: boolean,
  ): Promise<void> {
    if (src !== undefined) return this.writeData(src, at, uncached);
    return this.putZeros(at, length, uncached);
  }

  private async putZeros(at: number, length: number, uncached: boolean): Promise<void> {
    const zeros = new Uint8Array(Math.min(length, CHUNK));
    for (let done = 0; done < length; done += zeros.length) {
      const n = Math.min(zeros.length, length - done);
      await this.writeData(zeros.subarray(0, n), at + done, uncached);
    }
  }

  /** Writes `buf` at byte `at` of the data device, around its cache when `uncached`. */
  private writeData(buf: Uint8Array, at: number, uncached: boolean): Promise<void> {
    const data = this.pool.data;
    if (uncached && data.writeUncached !== undefined) return data.writeUncached(buf, at);
    return data.write(buf, at);
  }

  private checkRange(offset: number, length: number, op: string): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.size
    ) {
      throw new BadInputError(
        `${op} of ${length} bytes at offset ${offset} is outside thin device ${this.id} ` +
          `(${this.size} bytes)`,
        { hint: 'keep I/O within the device, or grow it' },
      );
    }
  }
}
