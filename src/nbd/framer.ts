/**
 * A synchronous, incremental framer (after pg-protocol's parser): bytes arrive in chunks of
 * any size; the framer hands its sink one frame of exactly the size the sink asked for, or
 * skips the bytes it was told to skip, and keeps the remainder for the next `push`. There is
 * no promise per frame: a chunk holding many requests is framed in one synchronous loop.
 *
 * A frame that lies inside one chunk is a `subarray` of it (no copy); a frame that spans
 * chunks is gathered once into a buffer of its exact size, from the constructor's `alloc`.
 *
 * A chunk may also be lent (`push(chunk, true)`): its memory is the caller's again once
 * `push` returns (a socket's one reusable read buffer). A frame inside it is then handed
 * over as lent too, a view valid only during `frame()`, which the sink copies if it keeps
 * it. Bytes of the chunk still unframed when `push` returns are copied: those of a frame
 * still incomplete straight into that frame's own buffer (from `alloc`), which later chunks
 * fill, so each byte of a large write's payload is copied once.
 */

/** What the sink wants next. */
export type Need =
  /** The next `take` bytes, as one frame (0 is allowed). */
  | { readonly take: number }
  /** Drop the next `skip` bytes, then call `skipped()`. */
  | { readonly skip: number }
  /** No more input: the framer drops everything from now on. */
  | 'stop';

export interface FrameSink {
  /**
   * One frame of the size last asked for; returns what it wants next. `lent`: `data` is a
   * view of a lent chunk, valid only until this returns.
   */
  frame(data: Buffer, lent: boolean): Need;
  /** The bytes last asked to be skipped are gone; returns what it wants next. */
  skipped(): Need;
}

export class Framer {
  private readonly chunks: Buffer[] = [];
  private available = 0;
  private need: Need;
  private held = false;
  private busy = false;
  /** The memory of the chunk being pushed, when it is lent. */
  private lent: ArrayBufferLike | undefined;
  /** The frame being gathered in its own buffer, `filled` bytes so far (counted available). */
  private partial: { readonly buf: Buffer; filled: number } | undefined;

  /** `alloc` makes the buffer of a frame gathered from several chunks. */
  constructor(
    private readonly sink: FrameSink,
    first: Need,
    private readonly alloc: (size: number) => Buffer = Buffer.allocUnsafe,
  ) {
    this.need = first;
  }

  /** Bytes received and not yet framed or skipped. */
  get buffered(): number {
    return this.available;
  }

  get stopped(): boolean {
    return this.need === 'stop';
  }

  /** Adds received bytes and frames as much as possible; `lent`: see the module comment. */
  push(chunk: Buffer, lent = false): void {
    if (this.need === 'stop') return;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.available += chunk.length;
    }
    if (!lent) {
      this.run();
      return;
    }
    const outer = this.lent;
    this.lent = chunk.buffer;
    try {
      this.run();
    } finally {
      this.lent = outer;
      this.keepRest(chunk.buffer);
    }
  }

  /**
   * Copies what is left of the chunks lent in `memory`: into the buffer of the frame they
   * begin or continue, when a frame waits for more bytes (and framing is not held).
   */
  private keepRest(memory: ArrayBufferLike): void {
    const need = this.need;
    if (!this.held && need !== 'stop' && 'take' in need && this.available > 0) {
      this.partial ??= { buf: this.alloc(need.take), filled: 0 };
      this.gather(this.partial);
    }
    const chunks = this.chunks;
    for (let i = chunks.length - 1; i >= 0; i--) {
      const c = chunks[i] as Buffer;
      if (c.buffer === memory) chunks[i] = Buffer.from(c);
    }
  }

  /** Moves the chunks' bytes into `partial`, as many as it lacks (they stay available). */
  private gather(partial: { readonly buf: Buffer; filled: number }): void {
    const chunks = this.chunks;
    while (partial.filled < partial.buf.length && chunks.length > 0) {
      const chunk = chunks[0] as Buffer;
      const part = Math.min(chunk.length, partial.buf.length - partial.filled);
      chunk.copy(partial.buf, partial.filled, 0, part);
      partial.filled += part;
      if (part === chunk.length) chunks.shift();
      else chunks[0] = chunk.subarray(part);
    }
  }

  /** Stops framing (bytes are still kept) until `release()`; for backpressure. */
  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    this.run();
  }

  /** Ends framing for good and drops the remainder. */
  stop(): void {
    this.need = 'stop';
    this.chunks.length = 0;
    this.available = 0;
    this.partial = undefined;
  }

  private run(): void {
    if (this.busy) return; // re-entered from the sink: the outer loop carries on
    this.busy = true;
    try {
      while (!this.held && this.step()) {
        // each step hands over one frame or finishes one skip
      }
    } finally {
      this.busy = false;
    }
  }

  /** Satisfies the current need if the bytes are there; false when it must wait. */
  private step(): boolean {
    const need = this.need;
    if (need === 'stop') {
      this.stop();
      return false;
    }
    if ('skip' in need) return this.stepSkip(need.skip);
    if (this.available < need.take) return false;
    const partial = this.partial;
    if (partial !== undefined) {
      this.gather(partial);
      this.partial = undefined;
      this.available -= partial.buf.length;
      this.setNeed(this.sink.frame(partial.buf, false));
      return true;
    }
    const first = this.chunks[0];
    const lent = first !== undefined && first.length >= need.take && first.buffer === this.lent;
    this.setNeed(this.sink.frame(this.take(need.take), lent));
    return true;
  }

  private stepSkip(remaining: number): boolean {
    const dropped = this.drop(remaining);
    if (dropped < remaining) {
      this.need = { skip: remaining - dropped };
      return false;
    }
    this.setNeed(this.sink.skipped());
    return true;
  }

  private setNeed(next: Need): void {
    if (this.need !== 'stop') this.need = next;
  }

  /** Removes and returns the next `n` bytes (n ≤ available). */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    if (first.length >= n) {
      this.consumeFirst(n);
      return first.subarray(0, n);
    }
    const out = this.alloc(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0] as Buffer;
      const part = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, part);
      this.consumeFirst(part);
      filled += part;
    }
    return out;
  }

  /** Drops up to `n` bytes; returns how many it dropped. */
  private drop(n: number): number {
    let dropped = 0;
    while (dropped < n && this.chunks.length > 0) {
      const chunk = this.chunks[0] as Buffer;
      const part = Math.min(chunk.length, n - dropped);
      this.consumeFirst(part);
      dropped += part;
    }
    return dropped;
  }

  private consumeFirst(n: number): void {
    const first = this.chunks[0] as Buffer;
    this.available -= n;
    if (n === first.length) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
  }
}
