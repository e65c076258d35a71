/**
 * Named concurrency primitives. Each `await` in a critical section is a point where other
 * work may run; these make the sections explicit.
 */

/** A FIFO mutual-exclusion lock. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  /** Runs `fn` once every earlier holder has finished; releases even when `fn` throws. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const next = new Promise<void>((resolve) => {
      release = resolve;
    });
    const previous = this.tail;
    this.tail = previous.then(() => next);
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/**
 * One FIFO lock per key, created on demand and dropped when idle (the kernel's bio prison
 * cells): work on one key runs one at a time; different keys run concurrently.
 */
export class KeyedLock<K> {
  private readonly tails = new Map<K, Promise<void>>();

  /** Keys with work queued or running. */
  get size(): number {
    return this.tails.size;
  }

  async run<T>(key: K, fn: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const previous = this.tails.get(key);
    const tail = previous === undefined ? mine : previous.then(() => mine);
    this.tails.set(key, tail);
    if (previous !== undefined) await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
