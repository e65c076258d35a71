/**
 * InputPoll: between requests, a connection watches its socket for a moment without
 * sleeping (busy-polling, as SPDK's targets and the kernel's busy_poll do), so that a client
 * that sends its next request as soon as it has a reply (queue depth 1) finds the server
 * awake. Sleeping in epoll and being woken costs two thread wake-ups per request, tens of
 * microseconds each on a virtual machine, more than the whole request.
 *
 * The contract with the connection:
 * - `due()` is asked once the connection has nothing in flight, its input is not held and
 *   its stream holds none of its own (lent input, or flowing with nothing buffered), and
 *   at most one request came since the last poll (a client sending bursts, at a deeper
 *   queue, gets its requests gathered into one reply write by the event loop's wake-up
 *   instead), at the end of a turn of the event loop (`setImmediate`); the bytes the poll
 *   reads are then the next ones on the socket, and go to the framer like any chunk.
 * - `hit()` and `miss()` report how the poll went.
 *
 * Bounds, so that polling never costs more than it can save:
 * - a poll lasts at most `BUDGET_US`, the event loop's other work waits at most that long;
 * - after `MISSES_BEFORE_REST` polls in a row found nothing, the connection does not poll
 *   for `REST_MS` (a client that paused, or one that sent its last request);
 * - only while no other connection has had input for `QUIET_MS`: with several busy clients
 *   the event loop has other work, and each wakes it anyway.
 */

/** The longest a poll lasts, in microseconds. */
export const BUDGET_US = 200;
/** Polls in a row that find nothing before the connection rests. */
export const MISSES_BEFORE_REST = 2;
/** How long a connection rests from polling after those misses. */
export const REST_MS = 100;
/** How long other connections must have been quiet. */
export const QUIET_MS = 5;

/** Which connection had input last, and when (performance.now()), across all connections. */
const lastInput = { by: undefined as object | undefined, at: Number.NEGATIVE_INFINITY };

export class InputPoll {
  #misses = 0;
  #restUntil = Number.NEGATIVE_INFINITY;
  /** Polls that found input, and polls that found none. */
  hits = 0;
  misses = 0;

  /** This connection received input (through its stream or a poll). */
  received(): void {
    lastInput.by = this;
    lastInput.at = performance.now();
  }

  /** Whether the connection should poll now (see the module comment). */
  due(): boolean {
    const now = performance.now();
    if (now < this.#restUntil) return false;
    return lastInput.by === this || now - lastInput.at >= QUIET_MS;
  }

  hit(): void {
    this.hits++;
    this.#misses = 0;
  }

  miss(): void {
    this.misses++;
    if (++this.#misses >= MISSES_BEFORE_REST) {
      this.#misses = 0;
      this.#restUntil = performance.now() + REST_MS;
    }
  }
}
