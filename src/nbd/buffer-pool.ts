/**
 * Reusable buffers for large read replies and write payloads, one pool per connection. A
 * 1 MiB buffer allocated afresh each time is a new external ArrayBuffer whose pages the
 * kernel must fault in and zero, and whose external size drives V8 into full garbage
 * collections; at a gigabyte a second that is a good part of the cost. A read reply is
 * taken here, filled, written, and given back once the stream has handed it to the kernel
 * (its write callback); a write payload the framer gathers from several chunks is taken here
 * and given back once the export's write has settled (the export has it only on loan).
 *
 * Sizes below `MIN_POOLED` are not taken back: up to `NODE_POOLED` bytes Node's own pool
 * serves them, and the rest (a 4 KiB read reply with its header, for one) are cut from a
 * 1 MiB slab, one after the other, as Node cuts its own small buffers. A slab is never
 * reused: it is freed by the garbage collector once no buffer cut from it is left, so a
 * small reply costs a view, not an allocation of its own (malloc, free and the sweep of its
 * backing store).
 *
 * Large buffers are kept by capacity (powers of two), at most `maxBytes` of them idle; only
 * buffers this set made are taken back.
 */

/** Replies smaller than this are not pooled. */
export const MIN_POOLED = 64 * 1024;
/** Node's `Buffer.allocUnsafe` takes sizes below this from its own pool. */
const NODE_POOLED = Buffer.poolSize >>> 1;
/** The slab that buffers between `NODE_POOLED` and `MIN_POOLED` are cut from. */
const SLAB_SIZE = 1024 * 1024;
/** Idle bytes a connection keeps by default. */
const DEFAULT_MAX_IDLE = 32 * 1024 * 1024;

export class BufferPool {
  private readonly idle = new Map<number, Buffer[]>();
  private readonly made = new WeakSet<ArrayBufferLike>();
  private idleBytes = 0;
  private slab: Buffer | undefined;
  private slabUsed = 0;

  constructor(private readonly maxIdle = DEFAULT_MAX_IDLE) {}

  /** A buffer of exactly `size` bytes, contents undefined. */
  take(size: number): Buffer {
    if (size < NODE_POOLED) return Buffer.allocUnsafe(size);
    if (size < MIN_POOLED) return this.cut(size);
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

  /** `size` bytes of the current slab, 8-byte aligned; a new slab when it is used up. */
  private cut(size: number): Buffer {
    let slab = this.slab;
    if (slab === undefined || this.slabUsed + size > SLAB_SIZE) {
      slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
      this.slab = slab;
      this.slabUsed = 0;
    }
    const buf = slab.subarray(this.slabUsed, this.slabUsed + size);
    this.slabUsed += (size + 7) & ~7;
    return buf;
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
