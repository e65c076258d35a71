/**
 * A BlockDevice for concurrency and failure tests: every read, write, discard and flush of
 * the inner device waits for `when(label)` before it takes effect, so a test decides when
 * (and so in which order) operations land, with a `Valve` that holds chosen kinds of
 * operation until opened, or with fast-check's `scheduler()`. Nothing is ordered for the
 * caller, exactly as the `BlockDevice` contract allows: overlapping writes land in the order
 * they are released, and a discard does not wait for the writes in flight to its range.
 *
 * It records the contract breaches the pool must never commit (`violations`): a discard or
 * write overlapping a write in flight, a read (`readNow` included) overlapping a discard in
 * flight. With the option `readNow`, the inner device's `readNow` is offered: reads done at
 * once, which wait for nothing; with `writeNow`, its `writeNow` likewise (a write done at
 * once must not overlap a write or a discard in flight). With `readFd`, the device offers
 * that number as its `readFile()` (at base 0), so that reads can be planned; the test reads the pieces
 * with `read`. `failNext(op)` makes the next `op` fail with an IoError.
 */

import type { BlockDevice, ReadFile } from '../../src/block/index.js';
import { IoError } from '../../src/util/index.js';

export type DeviceOp = 'read' | 'write' | 'discard' | 'flush';

/** Decides when an operation lands: resolves when it may. */
export type Landing = (op: DeviceOp, label: string) => Promise<void>;

interface Range {
  offset: number;
  length: number;
}

export class ScheduledDevice implements BlockDevice {
  readonly inner: BlockDevice;
  readonly violations: string[] = [];
  /** How many of each op have been issued. */
  readonly issued: Record<DeviceOp, number> = { read: 0, write: 0, discard: 0, flush: 0 };
  /** Reads done at once through `readNow`. */
  readsNow = 0;
  /** Writes done at once through `writeNow`. */
  writesNow = 0;
  readonly #when: Landing;
  readonly #writes = new Set<Range>();
  readonly #discards = new Set<Range>();
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #failing = new Set<DeviceOp>();
  readonly #readNow: boolean;
  readonly #readFile: ReadFile | undefined;
  readonly #writeNow: boolean;

  /**
   * With `readNow`, the device offers the inner device's `readNow` (reads done at once,
   * never held); without it, every read is scheduled.
   */
  constructor(
    inner: BlockDevice,
    when: Landing,
    options: { readNow?: boolean; readFd?: number; writeNow?: boolean } = {},
  ) {
    this.inner = inner;
    this.#when = when;
    this.#readNow = options.readNow === true;
    this.#readFile = options.readFd === undefined ? undefined : { fd: options.readFd, base: 0 };
    this.#writeNow = options.writeNow === true;
  }

  /** The stand-in descriptor given as `readFd`, or undefined (no planned reads). */
  readFile(): ReadFile | undefined {
    return this.#readFile;
  }

  get name(): string {
    return this.inner.name;
  }

  get size(): number {
    return this.inner.size;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  /** Writes issued and not yet landed. */
  get writesInFlight(): number {
    return this.#writes.size;
  }

  /** Makes the next `op` fail (after it lands) with an IoError. */
  failNext(op: DeviceOp): void {
    this.#failing.add(op);
  }

  read(buf: Uint8Array, offset: number): Promise<void> {
    return this.#track('read', { offset, length: buf.length }, async (range) => {
      for (const d of this.#discards) {
        if (overlap(d, range)) this.violations.push(`read ${show(range)} during a discard`);
      }
      await this.inner.read(buf, offset);
    });
  }

  /**
   * The inner device's `readNow`, at once (a page-cache hit lands in no order but now): a
   * read done without waiting must not overlap a discard in flight either.
   */
  readNow(buf: Uint8Array, offset: number): boolean {
    if (!this.#readNow || this.inner.readNow === undefined) return false;
    const range = { offset, length: buf.length };
    for (const d of this.#discards) {
      if (overlap(d, range)) this.violations.push(`read now ${show(range)} during a discard`);
    }
    const done = this.inner.readNow(buf, offset);
    if (done) this.readsNow++;
    return done;
  }

  /**
   * The inner device's `writeNow`, at once (it lands now, in no order with the writes in
   * flight): it must not overlap a write or a discard in flight.
   */
  writeNow(buf: Uint8Array, offset: number): boolean {
    if (!this.#writeNow || this.inner.writeNow === undefined) return false;
    const range = { offset, length: buf.length };
    for (const w of this.#writes) {
      if (overlap(w, range)) this.violations.push(`write now ${show(range)} during a write`);
    }
    for (const d of this.#discards) {
      if (overlap(d, range)) this.violations.push(`write now ${show(range)} during a discard`);
    }
    const done = this.inner.writeNow(buf, offset);
    if (done) this.writesNow++;
    return done;
  }

  write(buf: Uint8Array, offset: number): Promise<void> {
    const data = Uint8Array.from(buf);
    const range = { offset, length: buf.length };
    for (const w of this.#writes) {
      if (overlap(w, range)) this.violations.push(`write ${show(range)} during a write`);
    }
    this.#writes.add(range);
    return this.#track('write', range, () => this.inner.write(data, offset)).finally(() =>
      this.#writes.delete(range),
    );
  }

  discard(offset: number, length: number): Promise<void> {
    const range = { offset, length };
    for (const w of this.#writes) {
      if (overlap(w, range)) this.violations.push(`discard ${show(range)} during a write`);
    }
    this.#discards.add(range);
    return this.#track('discard', range, async () => {
      if (this.inner.discard === undefined) await this.inner.write(new Uint8Array(length), offset);
      else await this.inner.discard(offset, length);
    }).finally(() => this.#discards.delete(range));
  }

  /**
   * Covers what has landed, not the writes still in flight: the least the contract allows
   * (FileDevice waits for them, which would hide a caller that relies on it).
   */
  async flush(): Promise<void> {
    await this.#track('flush', { offset: 0, length: 0 }, () => this.inner.flush());
  }

  grow(newSize: number): Promise<void> {
    return this.inner.grow(newSize);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
  }

  async #track(op: DeviceOp, range: Range, land: (range: Range) => Promise<void>): Promise<void> {
    this.issued[op]++;
    const done = (async () => {
      await this.#when(op, `${op} ${show(range)}`);
      if (this.#failing.delete(op)) {
        throw new IoError(this.name, op, 'injected failure', { hint: 'none: a test fault' });
      }
      await land(range);
    })();
    if (op === 'write' || op === 'discard') {
      this.#inFlight.add(done);
      done.then(
        () => this.#inFlight.delete(done),
        () => this.#inFlight.delete(done),
      );
    }
    return done;
  }
}

/**
 * Holds the kinds of operation it is closed for until `open()`; everything else lands at
 * once (after a macrotask, so that a held operation is visibly in flight).
 */
export class Valve {
  #closedFor = new Set<DeviceOp>();
  #held: Array<() => void> = [];

  readonly when: Landing = (op) => {
    if (!this.#closedFor.has(op)) return Promise.resolve();
    return new Promise((resolve) => this.#held.push(resolve));
  };

  /** How many operations are held now. */
  get held(): number {
    return this.#held.length;
  }

  close(...ops: DeviceOp[]): void {
    for (const op of ops) this.#closedFor.add(op);
  }

  open(): void {
    this.#closedFor.clear();
    const held = this.#held;
    this.#held = [];
    for (const release of held) release();
  }
}

/** Lets every pending promise chain run: a few turns of the event loop. */
export async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
}

function overlap(a: Range, b: Range): boolean {
  return a.offset < b.offset + b.length && b.offset < a.offset + a.length;
}

function show(r: Range): string {
  return `[${r.offset}, +${r.length})`;
}
