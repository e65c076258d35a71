/**
 * A crash simulator in the manner of LevelDB's FaultInjectionTestEnv: a BlockDevice that
 * holds every write since the last flush in memory, so that a simulated power cut can lose
 * them, all or some, while everything flushed before it survives on the inner device.
 */

import type { BlockDevice } from '../../src/block/index.js';
import { IoError } from '../../src/util/index.js';

/** What happens to the writes not yet flushed when the device crashes. */
export type CrashMode = 'drop-all' | 'random-subset';

interface PendingWrite {
  offset: number;
  data: Uint8Array;
}

/**
 * Wraps `inner` and holds writes until `flush()`, which applies them to `inner` in the order
 * they were made and then flushes `inner`. Reads see the held writes over the inner device,
 * the newest winning.
 *
 * A discard is held the same way, as a write of zeros (it is durable only after a flush too).
 * Devices joined with `crashesWith` lose power together: when one crashes, so do the others,
 * in the same mode, before any of them takes another op.
 *
 * Each write, discard and flush is one op, numbered from 0 since construction. After
 * `crashAfter(n, mode)` the op numbered `n` does not happen: it throws
 * `IoError(name, op, 'simulated crash')` and the device is crashed. Crashing drops the held
 * writes (`drop-all`) or applies a random subset of them to `inner` in their order, each kept
 * with probability 1/2 (`random-subset`). Every later call throws
 * `IoError(name, op, 'device crashed')`.
 *
 * `grow()` goes straight to `inner` and is not an op. `close()` drops the held writes, as if
 * the machine went down right after, and leaves `inner` open: tests reopen or reread it.
 */
export class CrashDevice implements BlockDevice {
  readonly inner: BlockDevice;
  readonly name: string;
  #pending: PendingWrite[] = [];
  #ops = 0;
  #armed: { at: number; mode: CrashMode; rng: () => number } | undefined;
  #crashed = false;
  #closed = false;
  /** The flush now running, which the next flush waits for: flushes apply in turn. */
  #flushing: Promise<void> = Promise.resolve();
  /** Devices on the same power supply. */
  #together: CrashDevice[] = [];

  constructor(inner: BlockDevice) {
    this.inner = inner;
    this.name = inner.name;
  }

  get size(): number {
    return this.inner.size;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  /** How many ops (writes and flushes) have happened; the next op gets this number. */
  get opCount(): number {
    return this.#ops;
  }

  get crashed(): boolean {
    return this.#crashed;
  }

  /** How many writes are held, waiting for a flush. */
  get pendingWrites(): number {
    return this.#pending.length;
  }

  /**
   * Arms a crash at op number `n` (counted from construction), which must not have happened
   * yet. `rng` returns numbers in [0, 1), as `Math.random` does; pass a seeded one to replay.
   */
  crashAfter(n: number, mode: CrashMode, rng: () => number = Math.random): void {
    if (!Number.isSafeInteger(n) || n < this.#ops) {
      throw new RangeError(`cannot arm a crash at op ${n}: ${this.#ops} ops have happened`);
    }
    this.#armed = { at: n, mode, rng };
  }

  /** Makes this device and `others` lose power together from now on. */
  crashesWith(...others: CrashDevice[]): void {
    for (const other of others) {
      this.#together.push(other);
      other.#together.push(this);
    }
  }

  /**
   * Crashes now, dropping or partly applying the held writes as `mode` says; the devices it
   * crashes with crash too (each first stops taking ops, then settles its held writes).
   */
  async crash(mode: CrashMode, rng: () => number = Math.random): Promise<void> {
    this.#check('crash');
    const all = [this, ...this.#together.filter((d) => !d.#crashed && !d.#closed)];
    const held = all.map((d) => {
      d.#crashed = true;
      d.#armed = undefined;
      const pending = d.#pending;
      d.#pending = [];
      return pending;
    });
    if (mode === 'drop-all') return;
    for (const [i, d] of all.entries()) {
      for (const write of held[i] as PendingWrite[]) {
        if (rng() < 0.5) await d.inner.write(write.data, write.offset);
      }
    }
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.#check('read');
    this.#checkRange('read', offset, buf.length);
    await this.inner.read(buf, offset);
    const end = offset + buf.length;
    for (const write of this.#pending) {
      const from = Math.max(offset, write.offset);
      const to = Math.min(end, write.offset + write.data.length);
      if (from >= to) continue;
      buf.set(write.data.subarray(from - write.offset, to - write.offset), from - offset);
    }
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.#check('write');
    if (this.readOnly) throw new IoError(this.name, 'write', 'the device is read-only');
    this.#checkRange('write', offset, buf.length);
    if (!this.#countOp()) return this.#crashArmed('write');
    this.#pending.push({ offset, data: Uint8Array.from(buf) });
  }

  /**
   * `write` at once (see BlockDevice.writeNow): held like any write, and one op; false,
   * having done nothing, when this op is the armed crash (`write` then crashes).
   */
  writeNow(buf: Uint8Array, offset: number): boolean {
    this.#check('write');
    if (this.readOnly) throw new IoError(this.name, 'write', 'the device is read-only');
    this.#checkRange('write', offset, buf.length);
    if (!this.#countOp()) return false;
    this.#pending.push({ offset, data: Uint8Array.from(buf) });
    return true;
  }

  async discard(offset: number, length: number): Promise<void> {
    this.#check('discard');
    if (this.readOnly) throw new IoError(this.name, 'discard', 'the device is read-only');
    this.#checkRange('discard', offset, length);
    if (!this.#countOp()) return this.#crashArmed('discard');
    this.#pending.push({ offset, data: new Uint8Array(length) });
  }

  async flush(): Promise<void> {
    this.#check('flush');
    if (!this.#countOp()) return this.#crashArmed('flush');
    const previous = this.#flushing;
    const current = previous.then(() => this.#applyPending());
    this.#flushing = current.catch(() => {});
    await current;
  }

  async grow(newSize: number): Promise<void> {
    this.#check('grow');
    await this.inner.grow(newSize);
  }

  /** Drops the held writes and leaves the inner device open. Closing twice is harmless. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#pending = [];
  }

  /** Writes the writes held now to `inner` in order, then flushes it, then forgets them. */
  async #applyPending(): Promise<void> {
    const count = this.#pending.length;
    for (const write of this.#pending.slice(0, count)) {
      this.#check('flush');
      await this.inner.write(write.data, write.offset);
    }
    this.#check('flush');
    await this.inner.flush();
    this.#pending.splice(0, count);
  }

  /** Counts one op and returns true, or returns false if it is the armed one. */
  #countOp(): boolean {
    if (this.#armed?.at === this.#ops) return false;
    this.#ops += 1;
    return true;
  }

  /** Crashes as armed and throws the armed op's error. */
  async #crashArmed(op: string): Promise<never> {
    const armed = this.#armed;
    await this.crash(armed?.mode ?? 'drop-all', armed?.rng);
    throw new IoError(this.name, op, 'simulated crash');
  }

  #check(op: string): void {
    if (this.#closed) throw new IoError(this.name, op, 'the device is closed');
    if (this.#crashed) throw new IoError(this.name, op, 'device crashed');
  }

  #checkRange(op: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > this.size) {
      throw new IoError(
        this.name,
        op,
        `range of ${length} bytes at offset ${offset} is outside the device of ${this.size} bytes`,
      );
    }
  }
}
