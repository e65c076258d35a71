/**
 * Reusable buffers for large read replies and write payloads, one pool per connection. A
 * 1 MiB buffer allocated afresh each time is a new external ArrayBuffer whose pages the
 * kernel must fault in and zero, and whose external size drives V8 into full garbage
 * collections; at a gigabyte a second that is a good part of the cost. A read reply is
 * taken here, filled, written, and given back once the stream has handed it to the kernel
 * (its write callback); a write payload the framer gathers from several chunks is taken here
 * and given back once the export's write has settled (the export has it only on loan).
 *
 * Sizes below `MIN_POOLED` are plain `Buffer.allocUnsafe` (Node's own pool covers them).
 * Buffers are kept by capacity (powers of two), at most `maxBytes` of them idle; only
 * buffers this set made are taken back.
 */

/** Replies smaller than this are not pooled. */
export const MIN_POOLED = 64 * 1024;
/** Idle bytes a connection keeps by default. */
const DEFAULT_MAX_IDLE = 32 * 1024 * 1024;

export class BufferPool {
  private readonly idle = new Map<number, Buffer[]>();
  private readonly made = new WeakSet<ArrayBufferLike>();
  private idleBytes = 0;

  constructor(private readonly maxIdle = DEFAULT_MAX_IDLE) {}

  /** A buffer of exactly `size` bytes, contents undefined. */
  take(size: number): Buffer {
    if (size < MIN_POOLED) return Buffer.allocUnsafe(size);
    const capacity = 2 ** Math.ceil(Math.log2(size));
    const reused = this.idle.get(capacity)?.pop();
    if (reused !== undefined) {
      this.idleBytes -= capacity;
      return reused.subarray(0, size);
    }
    const fresh = Buffer.allocUnsafeSlow(capacity);
    this.made.add(fresh.buffer);
    return fresh.subarray(0, size);
  }

  /** Gives back a buffer from `take` that nothing uses any more. */
  give(buf: Buffer): void {
    const backing = buf.buffer;
    if (!this.made.has(backing)) return;
    const capacity = backing.byteLength;
    if (this.idleBytes + capacity > this.maxIdle) return;
    let list = this.idle.get(capacity);
    if (list === undefined) {
      list = [];
      this.idle.set(capacity, list);
    }
    list.push(Buffer.from(backing, 0, capacity));
    this.idleBytes += capacity;
  }
}
