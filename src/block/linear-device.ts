/** A BlockDevice made of segments laid end to end: device-mapper's linear target. */

import {
  type BlockDevice,
  checkGrow,
  checkOpen,
  checkRange,
  checkWritable,
  type ReadFile,
} from './block-device.js';

/**
 * Segments, each a BlockDevice (usually a region of a block device), laid end to end: byte
 * `x` of the whole is byte `x − start` of the segment holding it. Reads, writes and
 * discards split at segment edges; `flush()` flushes every segment. `grow()` grows the last
 * segment; `append()` adds a segment at the end (the way lvextend adds extents from another
 * device). The LinearDevice owns its segments: `close()` closes them.
 *
 * Callers keep the BlockDevice contract (no overlapping writes in flight), so each segment
 * keeps it too.
 *
 * A range inside one segment is read or written at once (`readNow`, `writeNow`) when that
 * segment can; planned reads (`readFile`) are offered while there is one segment only.
 */
export class LinearDevice implements BlockDevice {
  readonly name: string;
  readonly readOnly: boolean;
  readonly #segments: BlockDevice[];
  #closed = false;
  /** `stopReadahead` was called: segments appended later are told too. */
  #readaheadStopped = false;

  constructor(name: string, segments: readonly BlockDevice[]) {
    if (segments.length === 0) throw new RangeError(`${name}: a linear device needs a segment`);
    this.name = name;
    this.#segments = [...segments];
    this.readOnly = segments.some((s) => s.readOnly);
  }

  get size(): number {
    return this.#segments.reduce((sum, s) => sum + s.size, 0);
  }

  get segments(): readonly BlockDevice[] {
    return this.#segments;
  }

  /** Whether every segment's discard unmaps (see FileDevice and BlockDevDevice). */
  get punchesHoles(): boolean {
    return this.#segments.every((s) => s.discard !== undefined && s.punchesHoles !== false);
  }

  /** Adds `segment` at the end; the device grows by its size. */
  append(segment: BlockDevice): void {
    checkOpen(this.name, 'append', this.#closed);
    checkWritable(this, 'append');
    if (segment.readOnly) checkWritable(segment, 'append');
    this.#segments.push(segment);
    if (this.#readaheadStopped) segment.stopReadahead?.();
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    checkOpen(this.name, 'read', this.#closed);
    checkRange(this.name, 'read', offset, buf.length, this.size);
    await Promise.all(
      this.#pieces(offset, buf.length).map(({ segment, at, from, length }) =>
        segment.read(buf.subarray(from, from + length), at),
      ),
    );
  }

  /** See `BlockDevice.readNow`: the segment's, for a range inside one segment. */
  readNow(buf: Uint8Array, offset: number): boolean {
    if (this.#closed) return false;
    const within = this.#within(offset, buf.length);
    return within?.segment.readNow?.(buf, within.at) === true;
  }

  /** See `BlockDevice.writeNow`: the segment's, for a range inside one segment. */
  writeNow(buf: Uint8Array, offset: number): boolean {
    if (this.#closed || this.readOnly) return false;
    const within = this.#within(offset, buf.length);
    return within?.segment.writeNow?.(buf, within.at) === true;
  }

  /** See `BlockDevice.readFile`: the one segment's, while there is only one. */
  readFile(): ReadFile | undefined {
    if (this.#closed || this.#segments.length !== 1) return undefined;
    return this.#segments[0]?.readFile?.();
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    await this.#write(buf, offset, false);
  }

  /** See `BlockDevice.writeUncached`: each piece through its segment's, where it has one. */
  async writeUncached(buf: Uint8Array, offset: number): Promise<void> {
    await this.#write(buf, offset, true);
  }

  /** Discards each piece; a segment that cannot discard gets zeros written. */
  async discard(offset: number, length: number): Promise<void> {
    checkOpen(this.name, 'discard', this.#closed);
    checkWritable(this, 'discard');
    checkRange(this.name, 'discard', offset, length, this.size);
    await Promise.all(
      this.#pieces(offset, length).map(({ segment, at, length: n }) =>
        segment.discard === undefined
          ? segment.write(new Uint8Array(n), at)
          : segment.discard(at, n),
      ),
    );
  }

  /** See `BlockDevice.stopReadahead`: every segment's, now and once appended; true if all took it. */
  stopReadahead(): boolean {
    if (this.#closed) return false;
    this.#readaheadStopped = true;
    return this.#segments.map((s) => s.stopReadahead?.() ?? false).every(Boolean);
  }

  async flush(): Promise<void> {
    checkOpen(this.name, 'flush', this.#closed);
    await Promise.all(this.#segments.map((s) => s.flush()));
  }

  /** Grows the last segment by the difference. */
  async grow(newSize: number): Promise<void> {
    checkOpen(this.name, 'grow', this.#closed);
    checkWritable(this, 'grow');
    const size = this.size;
    checkGrow(this.name, newSize, size);
    const last = this.#segments[this.#segments.length - 1] as BlockDevice;
    await last.grow(last.size + (newSize - size));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const results = await Promise.allSettled(this.#segments.map((s) => s.close()));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  }

  async #write(buf: Uint8Array, offset: number, uncached: boolean): Promise<void> {
    checkOpen(this.name, 'write', this.#closed);
    checkWritable(this, 'write');
    checkRange(this.name, 'write', offset, buf.length, this.size);
    await Promise.all(
      this.#pieces(offset, buf.length).map(({ segment, at, from, length }) => {
        const piece = buf.subarray(from, from + length);
        const writeUncached = uncached ? segment.writeUncached : undefined;
        return writeUncached === undefined
          ? segment.write(piece, at)
          : writeUncached.call(segment, piece, at);
      }),
    );
  }

  /** The segment holding all of [offset, offset + length), and where the range starts in it. */
  #within(offset: number, length: number): { segment: BlockDevice; at: number } | undefined {
    if (offset < 0 || length < 0) return undefined;
    let start = 0;
    for (const segment of this.#segments) {
      const end = start + segment.size;
      if (offset < end) {
        return offset + length <= end ? { segment, at: offset - start } : undefined;
      }
      start = end;
    }
    return undefined;
  }

  /** The parts of [offset, offset + length) in each segment, with where they sit in the buffer. */
  #pieces(
    offset: number,
    length: number,
  ): Array<{ segment: BlockDevice; at: number; from: number; length: number }> {
    const pieces = [];
    let start = 0;
    for (const segment of this.#segments) {
      const end = start + segment.size;
      const lo = Math.max(offset, start);
      const hi = Math.min(offset + length, end);
      if (lo < hi) pieces.push({ segment, at: lo - start, from: lo - offset, length: hi - lo });
      start = end;
    }
    return pieces;
  }
}
