/**
 * SocketSender: a connection's replies sent by the native sender (sender-native.ts) instead
 * of the socket's own writes, so that read replies are read and sent from native threads
 * when requests come in bursts, and straight from the event loop when they come one at a
 * time. Every reply is a copy, so a buffer passed in is free again at once.
 *
 * Each reply that does not reach the socket at once is outstanding until the native side
 * reports it; `outstanding` counts them (the connection holds its input on it) and `idle()`
 * waits for none. A failed socket write is reported once through `onBroken`; `close()` drops
 * what is still outstanding, and may be called any number of times.
 */

import { Socket } from 'node:net';
import { constants } from 'node:os';
import type { Duplex } from 'node:stream';
import { type SenderAddon, type SenderHandle, senderAddon } from './sender-native.js';

/** The socket failed: this reply and everything after it are dropped. */
export const SEND_BROKEN = -constants.errno.EPIPE;
/** The sender was closed first: the reply was dropped. */
export const SEND_CANCELED = -constants.errno.ECANCELED;

/** How `sendRead` went: the addon's codes (see SenderAddon.sendRead). */
export const READ_SENT = 0;
export const READ_QUEUED = 1;
export const READ_COPIED = 2;
/** Read, and gathered with the burst's other replies until `uncork`. */
export const READ_CORKED = 3;

/** `send` queued the reply behind another (it is reported later); 3 is READ_CORKED's code. */
const SEND_QUEUED = 1;

/**
 * Bytes of replies a cork gathers before they are written anyway: a burst of requests is
 * answered in writes of at most about this much, so gathering never holds more memory.
 */
export const GATHER_LIMIT = 4 * 1024 * 1024;

export class SocketSender {
  readonly #addon: SenderAddon;
  readonly #handle: SenderHandle;
  #closed = false;
  #broken = false;
  #nextTag = 1;
  #outstanding = 0;
  #corked = false;
  #gathered = 0;
  readonly #uncorkTurn = (): void => this.uncork();
  /** Whom to tell of the result of a queued reply, by tag. */
  readonly #waiting = new Map<number, (result: number) => void>();
  #idle: Array<() => void> = [];

  /** Called when a failed write broke the socket. */
  onBroken: (err: Error) => void = () => {};
  /** Called when `outstanding` went down. */
  onChange: () => void = () => {};

  /** A sender for `stream` when it is a socket with a file descriptor and the addon is built. */
  static open(stream: Duplex): SocketSender | undefined {
    if (senderAddon === undefined || !(stream instanceof Socket)) return undefined;
    const fd = (stream as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return undefined;
    return new SocketSender(senderAddon, fd);
  }

  private constructor(addon: SenderAddon, fd: number) {
    this.#addon = addon;
    this.#handle = addon.open(fd, (results) => this.#done(results));
  }

  /**
   * Polls the socket for input without sleeping, for up to `budgetUs` microseconds, reading
   * what comes into `buf`: the bytes read, 0 when the client closed its side, or a negated
   * errno (-EAGAIN: nothing came in time).
   */
  awaitInput(buf: Uint8Array, budgetUs: number): number {
    if (this.#closed) return SEND_CANCELED;
    return this.#addon.awaitInput(this.#handle, buf, budgetUs);
  }

  /** Replies handed over and not yet reported. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /** False once closed or broken: nothing sent from then on goes out. */
  get usable(): boolean {
    return !this.#closed && !this.#broken;
  }

  /** Replies are being gathered (between `cork` and `uncork`). */
  get corked(): boolean {
    return this.#corked;
  }

  /** The tag the last `send` or `sendRead` used. */
  get lastTag(): number {
    return this.#nextTag - 1;
  }

  /**
   * Sends one whole reply (a copy of `bytes`). Outside a cork it corks until the end of the
   * current turn (`process.nextTick`, which runs once the turn's microtasks are done), so
   * the replies of writes that complete together leave in one write.
   */
  send(bytes: Uint8Array): void {
    if (!this.usable) return;
    if (!this.#corked) {
      this.cork();
      process.nextTick(this.#uncorkTurn);
    }
    const r = this.#addon.send(this.#handle, bytes, this.#nextTag++);
    if (r === SEND_QUEUED) this.#outstanding++;
    else if (r === READ_CORKED) this.#gather(bytes.length);
    else if (r < 0) this.#fail(r);
  }

  /**
   * Gathers the replies sent from now until `uncork` (nothing is reported of them), so that
   * a burst of requests is answered with one write: fewer system calls, and one wake-up of
   * the client instead of one per reply.
   */
  cork(): void {
    if (!this.usable) return;
    this.#addon.cork(this.#handle, true);
    this.#corked = true;
    this.#gathered = 0;
  }

  /** Writes what `cork` gathered; what the socket did not take is outstanding. */
  uncork(): void {
    if (!this.#corked) return;
    this.#corked = false;
    if (!this.usable) return;
    const r = this.#addon.cork(this.#handle, false);
    if (r > 0) this.#outstanding += r;
    else if (r === SEND_BROKEN) this.#fail(r);
  }

  /**
   * Sends `header` and the bytes of the pieces (see ReadPlan). `atOnce`: try on this thread
   * first, from the page cache only. Returns READ_SENT, READ_CORKED (read, and gathered
   * until `uncork`), READ_QUEUED (the pieces are still to be read: keep their files),
   * READ_COPIED (they are read; the reply waits for the socket), or a negated errno (a read
   * failed at once, or the sender is gone: nothing queued). Queued and copied replies are
   * reported through `settled(lastTag)`.
   */
  sendRead(header: Uint8Array, pieces: Float64Array, count: number, atOnce: boolean): number {
    if (!this.usable) return SEND_CANCELED;
    const r = this.#addon.sendRead(this.#handle, header, pieces, count, this.#nextTag++, atOnce);
    if (r === READ_QUEUED || r === READ_COPIED) this.#outstanding++;
    else if (r === READ_CORKED) this.#gather(header.length + piecesLength(pieces, count));
    else if (r === SEND_BROKEN) this.#fail(r);
    return r;
  }

  /** Counts bytes the cork holds; past GATHER_LIMIT they are written, and gathering goes on. */
  #gather(bytes: number): void {
    this.#gathered += bytes;
    if (this.#gathered < GATHER_LIMIT) return;
    this.uncork();
    this.cork();
  }

  /** The result of queued reply `tag`: 0 when sent, a negated errno otherwise. */
  settled(tag: number): Promise<number> {
    return new Promise((resolve) => this.#waiting.set(tag, resolve));
  }

  /** Resolves once nothing is outstanding. */
  idle(): Promise<void> {
    if (this.#outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Stops sending: outstanding replies are dropped and reported as SEND_CANCELED. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#addon.close(this.#handle, true);
  }

  #done(results: Float64Array): void {
    for (let i = 0; i < results.length; i += 2) {
      const tag = results[i] as number;
      const result = results[i + 1] as number;
      this.#outstanding--;
      const waiter = this.#waiting.get(tag);
      if (waiter !== undefined) {
        this.#waiting.delete(tag);
        waiter(result);
      }
      if (result === SEND_BROKEN) this.#fail(result);
    }
    if (this.#outstanding === 0 && this.#idle.length > 0) {
      const idle = this.#idle;
      this.#idle = [];
      for (const resolve of idle) resolve();
    }
    this.onChange();
  }

  #fail(result: number): void {
    this.#corked = false;
    if (this.#broken || this.#closed) return;
    this.#broken = true;
    const err = Object.assign(new Error('write to the client failed: EPIPE'), {
      code: 'EPIPE',
      errno: result,
    });
    this.onBroken(err);
  }
}

/** The bytes of the first `count` (fd, offset, length) pieces. */
function piecesLength(pieces: Float64Array, count: number): number {
  let total = 0;
  for (let i = 0; i < count; i++) total += pieces[3 * i + 2] as number;
  return total;
}
