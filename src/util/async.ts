/**
 * Named concurrency primitives. Each `await` in a critical section is a point where other
 * work may run; these make the sections explicit.
 */

/**
 * A FIFO mutual-exclusion lock. Taking it while it is free costs no promise and no wait: a
 * holder that never awaits before calling `fn` keeps the caller's turn, which the data path
 * relies on to stay cheap.
 */
export class Mutex {
  private held = false;
  private sections = 0;
  /** Callers waiting, first to run first; each is handed the lock as it is released. */
  private readonly waiters: Array<() => void> = [];

  /**
   * Whether anyone holds the lock or waits for it. When false, no critical section is
   * part-way through, so code that runs without awaiting sees what they protect whole.
   */
  get locked(): boolean {
    return this.held || this.waiters.length > 0;
  }

  /**
   * Critical sections finished so far. While `locked` is false and this has not moved,
   * nothing the lock protects has changed: a value read from it then may be kept until it
   * moves.
   */
  get released(): number {
    return this.sections;
  }

  /** Runs `fn` once every earlier holder has finished; releases even when `fn` throws. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.held) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.held = true;
    try {
      return await fn();
    } finally {
      this.sections++;
      // Handed straight to the next waiter: nobody can take it in between.
      const next = this.waiters.shift();
      if (next === undefined) this.held = false;
      else next();
    }
  }
}

/** One caller of `KeyedLock`: it runs once it is first in the queue of each of its keys. */
interface Ticket {
  /** Keys whose queue it is not yet first in. */
  blocked: number;
  start: () => void;
}

/**
 * One FIFO lock per key, created on demand and dropped when idle (the kernel's bio prison
 * cells): work on one key runs one at a time; different keys run concurrently.
 */
export class KeyedLock<K> {
  /** Per key with work queued or running, its tickets in order; the first one holds it. */
  private readonly queues = new Map<K, Ticket[]>();

  /** Keys with work queued or running. */
  get size(): number {
    return this.queues.size;
  }

  /** Whether work on `key` is queued or running. */
  has(key: K): boolean {
    return this.queues.has(key);
  }

  async run<T>(key: K, fn: () => Promise<T>): Promise<T> {
    const queue = this.queues.get(key);
    if (queue !== undefined) return this.runAll([key], fn);
    // Free: held at once, with no promise of its own.
    const ticket: Ticket = { blocked: 0, start: noop };
    this.queues.set(key, [ticket]);
    try {
      return await fn();
    } finally {
      this.release(key);
    }
  }

  /**
   * Runs `fn` holding every key of `keys` at once. All the keys are queued in one step, so
   * two callers that share keys are in the same order on each of them and never deadlock,
   * whatever order the keys come in.
   */
  async runAll<T>(keys: Iterable<K>, fn: () => Promise<T>): Promise<T> {
    const ticket: Ticket = { blocked: 0, start: noop };
    const mine = [...new Set(keys)];
    for (const key of mine) {
      const queue = this.queues.get(key);
      if (queue === undefined) this.queues.set(key, [ticket]);
      else {
        queue.push(ticket);
        ticket.blocked++;
      }
    }
    if (ticket.blocked > 0) {
      await new Promise<void>((resolve) => {
        ticket.start = resolve;
      });
    }
    try {
      return await fn();
    } finally {
      for (const key of mine) this.release(key);
    }
  }

  /** The first ticket in the queue of `key` leaves it and lets the next one in. */
  private release(key: K): void {
    const queue = this.queues.get(key) as Ticket[];
    queue.shift();
    const next = queue[0];
    if (next === undefined) {
      this.queues.delete(key);
      return;
    }
    next.blocked--;
    if (next.blocked === 0) next.start();
  }
}

function noop(): void {}

/**
 * The kernel's deferred set (dm_deferred_set): work in flight `enter`s it and `leave`s it;
 * `drained()` resolves once everything that had entered before the call has left, whatever
 * entered since. A pool uses it so that a freed block is reused only after the I/O that
 * looked it up has finished.
 */
export class DeferredSet {
  /** Entries still in flight per generation; a new generation starts at each `drained()`. */
  private readonly counts = new Map<number, number>();
  private generation = 0;
  private waiters: Array<{ upTo: number; resolve: () => void }> = [];

  /** Enters the set; call `leave` with the result once the work is done. */
  enter(): number {
    const g = this.generation;
    this.counts.set(g, (this.counts.get(g) ?? 0) + 1);
    return g;
  }

  leave(entry: number): void {
    const left = (this.counts.get(entry) ?? 1) - 1;
    if (left > 0) this.counts.set(entry, left);
    else this.counts.delete(entry);
    this.wake();
  }

  /** Runs `fn` as one entry. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const entry = this.enter();
    try {
      return await fn();
    } finally {
      this.leave(entry);
    }
  }

  /** Resolves once every entry made before this call has left. */
  drained(): Promise<void> {
    const upTo = this.generation++;
    if (!this.busyUpTo(upTo)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ upTo, resolve }));
  }

  private busyUpTo(upTo: number): boolean {
    for (const g of this.counts.keys()) if (g <= upTo) return true;
    return false;
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (this.busyUpTo(w.upTo)) still.push(w);
      else w.resolve();
    }
    this.waiters = still;
  }
}

/**
 * A gate in front of one object's changes, the kernel's suspend/resume of a dm device:
 * changes `pass` through it concurrently; `quiesce(fn)` closes it (new changes wait), waits
 * for the changes inside to finish, runs `fn`, and opens it again.
 */
export class QuiesceGate {
  private inside = 0;
  private closed: Promise<void> | undefined;
  private drainedWaiter: (() => void) | undefined;

  /** Changes inside the gate now. */
  get active(): number {
    return this.inside;
  }

  /** Whether a change may pass now: no quiesce is under way or waiting. */
  get open(): boolean {
    return this.closed === undefined;
  }

  /** Runs `fn` inside the gate, once it is open. */
  async pass<T>(fn: () => Promise<T>): Promise<T> {
    while (this.closed !== undefined) await this.closed;
    this.inside++;
    try {
      return await fn();
    } finally {
      this.inside--;
      if (this.inside === 0) this.drainedWaiter?.();
    }
  }

  /** Runs `fn` with the gate closed and nothing inside it. One quiesce at a time. */
  async quiesce<T>(fn: () => Promise<T>): Promise<T> {
    while (this.closed !== undefined) await this.closed;
    let open!: () => void;
    this.closed = new Promise<void>((resolve) => {
      open = resolve;
    });
    try {
      if (this.inside > 0) {
        await new Promise<void>((resolve) => {
          this.drainedWaiter = resolve;
        });
      }
      this.drainedWaiter = undefined;
      return await fn();
    } finally {
      this.closed = undefined;
      open();
    }
  }
}

/**
 * A read/write lock that prefers writers: once a writer waits, new readers queue behind it,
 * so a steady stream of readers cannot starve it (the kernel's root_lock discipline).
 */
export class AsyncRwLock {
  private readers = 0;
  private writing = false;
  private readonly waitingWriters: Array<() => void> = [];
  private waitingReaders: Array<() => void> = [];

  /**
   * Whether a reader would be let in now: no writer holds the lock or waits for it. Work
   * done at once, with no await, while this holds runs as if it held the lock shared.
   */
  get readableNow(): boolean {
    return !this.writing && this.waitingWriters.length === 0;
  }

  /** Runs `fn` alongside other readers, never alongside a writer. */
  async read<T>(fn: () => Promise<T>): Promise<T> {
    if (this.writing || this.waitingWriters.length > 0) {
      await new Promise<void>((resolve) => this.waitingReaders.push(resolve));
    } else {
      this.readers++;
    }
    try {
      return await fn();
    } finally {
      this.readers--;
      this.wake();
    }
  }

  /** Runs `fn` alone. */
  async write<T>(fn: () => Promise<T>): Promise<T> {
    if (this.writing || this.readers > 0) {
      await new Promise<void>((resolve) => this.waitingWriters.push(resolve));
    } else {
      this.writing = true;
    }
    try {
      return await fn();
    } finally {
      this.writing = false;
      this.wake();
    }
  }

  private wake(): void {
    if (this.writing || this.readers > 0) return;
    const writer = this.waitingWriters.shift();
    if (writer !== undefined) {
      this.writing = true;
      writer();
      return;
    }
    const readers = this.waitingReaders;
    this.waitingReaders = [];
    this.readers += readers.length;
    for (const r of readers) r();
  }
}
