/**
 * Reusable buffers for large read replies and write payloads, one pool per connection. A
 * 1 MiB buffer allocated afresh each time is a new external ArrayBuffer whose pages the
 * kernel must fault in and zero, and whose external size drives V8 into full garbage
 * collections; at a gigabyte a second that is a good part of the cost. A read reply is
 * taken here, filled, written, and given back once the stream has handed it to the kernel
 * (its write callback); a write payload the framer gathers from several chunks is taken here
 * and given back once the export's write has settled (the export has it only on loan).
 *
 * Below `MIN_POOLED`: up to `NODE_POOLED` bytes Node's own pool serves them (never taken
 * back); the rest (a 4 KiB read reply with its header, for one) are cut from a 1 MiB slab,
 * one after the other, as Node cuts its own small buffers, and kept by exact size once given
 * back (a few hundred of each), so that a steady stream of replies reuses memory already
 * touched: a fresh page costs a fault and its zeroing on the first copy into it. A slab is
 * freed by the garbage collector once no buffer cut from it is left.
 *
 * Large buffers are kept by capacity, the size rounded up to a multiple of 64 KiB (a 1 MiB
 * read's reply with its header takes 1 MiB and 64 KiB, where a power of two would take 2),
 * at most `maxIdle` bytes of them: 64 MiB by default, so that a client keeping 32 reads of
 * 1 MiB in flight finds every buffer it gave back. Only buffers this pool made are taken
 * back.
 */

/** Replies smaller than this are not pooled. */
export const MIN_POOLED = 64 * 1024;
/** Node's `Buffer.allocUnsafe` takes sizes below this from its own pool. */
const NODE_POOLED = Buffer.poolSize >>> 1;
/** The slab that buffers between `NODE_POOLED` and `MIN_POOLED` are cut from. */
const SLAB_SIZE = 1024 * 1024;
/** Small buffers of one size kept once given back. */
const MAX_IDLE_SMALL = 256;
/** Idle bytes a connection keeps by default. */
const DEFAULT_MAX_IDLE = 64 * 1024 * 1024;
/** Large buffers' capacities are multiples of this. */
const LARGE_STEP = 64 * 1024;

export class BufferPool {
  private readonly idle = new Map<number, Buffer[]>();
  private readonly made = new WeakSet<ArrayBufferLike>();
  private idleBytes = 0;
  private slab: Buffer | undefined;
  private slabUsed = 0;
  /** The backing stores of the slabs (so only buffers cut here are taken back). */
  private readonly slabs = new WeakSet<ArrayBufferLike>();
  private readonly idleSmall = new Map<number, Buffer[]>();

  constructor(private readonly maxIdle = DEFAULT_MAX_IDLE) {}

  /** A buffer of exactly `size` bytes, contents undefined. */
  take(size: number): Buffer {
    if (size < NODE_POOLED) return Buffer.allocUnsafe(size);
    if (size < MIN_POOLED) return this.idleSmall.get(size)?.pop() ?? this.cut(size);
    const capacity = Math.ceil(size / LARGE_STEP) * LARGE_STEP;
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
      this.slabs.add(slab.buffer);
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
    if (this.slabs.has(backing)) {
      let list = this.idleSmall.get(buf.length);
      if (list === undefined) {
        list = [];
        this.idleSmall.set(buf.length, list);
      }
      if (list.length < MAX_IDLE_SMALL) list.push(buf);
      return;
    }
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
