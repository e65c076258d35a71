/**
 * Serializes everything one connection sends: each `send` writes its buffers back to back,
 * so a reply (header plus payload, or all chunks of a structured reply) is never interleaved
 * with another, and replies go out in the order `send` was called. When the stream reports
 * backpressure (`write()` returns false) the writer waits for 'drain' before the next reply.
 *
 * Once the stream is closed or destroyed, `send` drops its buffers and resolves: a reply to
 * a client that went away is not an error.
 *
 * With a `SocketSender` (`useSender`, a socket in transmission), every reply goes through it
 * instead, from the first one after the stream's own queue has emptied (so no byte it sends
 * overtakes one the stream still holds); replies it could not write at once count as
 * pending until it reports them.
 */

import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Mutex } from '../util/index.js';
import type { SocketSender } from './socket-sender.js';

const DONE: Promise<void> = Promise.resolve();

export class ReplyWriter {
  private readonly mutex = new Mutex();
  private queued = 0;
  /** Buffers sent with a `written` callback, and whom to tell once the stream is done with each. */
  private readonly owners = new Map<Buffer, () => void>();

  /** Called whenever the number of replies waiting to be written changes. */
  onChange: () => void = () => {};

  /** Written bytes are copied away (a socket: into the kernel), never passed on by reference. */
  private readonly copies: boolean;
  private sender: SocketSender | undefined;
  /** The sender has taken over: the stream's own queue was empty when it started. */
  private senderOnly = false;

  constructor(private readonly stream: Duplex) {
    this.copies = stream instanceof Socket;
  }

  /**
   * Sends through `sender` from now on (see above); closes it when the stream closes, and
   * destroys the stream when it breaks.
   */
  useSender(sender: SocketSender): void {
    this.sender = sender;
    sender.onChange = () => this.onChange();
    sender.onBroken = (err) => this.stream.destroy(err);
    this.stream.once('close', () => sender.close());
    if (this.stream.destroyed) sender.close();
  }

  /** The sender, when every reply now goes through it; undefined while the stream sends. */
  get native(): SocketSender | undefined {
    return this.takenOver() && this.sender?.usable ? this.sender : undefined;
  }

  /** True once the sender sends everything; it takes over when the stream holds nothing. */
  private takenOver(): boolean {
    if (!this.senderOnly && this.sender !== undefined) {
      this.senderOnly = this.queued === 0 && this.stream.writableLength === 0;
    }
    return this.senderOnly;
  }

  /** Replies queued or being written (the connection holds its input when this grows). */
  get pending(): number {
    return this.queued + (this.sender?.outstanding ?? 0);
  }

  /**
   * Nothing sent is still held: the stream is a socket and every byte so far is in the
   * kernel's hands (a copy), so a buffer sent is free to reuse. Any other stream may pass
   * the buffer itself on (an in-memory pair does), so it never is.
   */
  get handedOver(): boolean {
    if (this.senderOnly) return true;
    return this.copies && this.queued === 0 && this.stream.writableLength === 0;
  }

  /** True while the stream still accepts bytes. */
  get open(): boolean {
    return !this.stream.destroyed && this.stream.writable;
  }

  /**
   * Writes `buffers` as one uninterrupted unit, after every earlier `send`. With nothing
   * queued it writes at once, and without backpressure it is done when it returns.
   */
  send(...buffers: Buffer[]): Promise<void> {
    if (this.sender !== undefined && this.viaSender(buffers)) return DONE;
    if (this.queued > 0) return this.counted(this.mutex.run(() => this.writeAll(buffers)));
    if (!this.writeNow(buffers)) return DONE;
    // The stream is full: later replies queue behind the wait for 'drain'.
    return this.counted(this.mutex.run(() => this.drained()));
  }

  /**
   * `send(buf)`, but undefined when the reply went to the stream at once and nothing is left
   * to wait for: then no promise is made at all. With `written`, that is called once the
   * stream no longer needs `buf` (handed to the kernel, or dropped because the stream
   * closed), so that the caller may reuse it.
   */
  sendAtOnce(buf: Buffer, written?: () => void): Promise<void> | undefined {
    if (this.sender !== undefined && this.viaSender([buf])) {
      written?.();
      return undefined;
    }
    if (written !== undefined) this.owners.set(buf, written);
    if (this.queued > 0) return this.counted(this.mutex.run(() => this.writeAll([buf])));
    if (!this.writeNow([buf])) return undefined;
    return this.counted(this.mutex.run(() => this.drained()));
  }

  /**
   * Sends `buffers` as one reply through the sender when it has taken over: true when done
   * so (a closed or broken sender drops them, as a closed stream does).
   */
  private viaSender(buffers: readonly Buffer[]): boolean {
    if (!this.takenOver()) return false;
    const sender = this.sender as SocketSender;
    sender.send(buffers.length === 1 ? (buffers[0] as Buffer) : Buffer.concat(buffers));
    return true;
  }

  /**
   * Runs `fn` (the framing of one chunk of input) with the sender's replies gathered, then
   * writes them together; without a sender it just runs `fn`.
   */
  gathering(fn: () => void): void {
    const sender = this.native;
    if (sender === undefined) {
      fn();
      return;
    }
    sender.cork();
    try {
      fn();
    } finally {
      sender.uncork();
    }
  }

  /** Counts `work` as queued while it runs. */
  private async counted(work: Promise<void>): Promise<void> {
    this.queued++;
    this.onChange();
    try {
      await work;
    } finally {
      this.queued--;
      this.onChange();
    }
  }

  /** Hands `buffers` to the stream; true when that filled it (backpressure). */
  private writeNow(buffers: readonly Buffer[]): boolean {
    let full = false;
    for (const buf of buffers) {
      const written = this.owners.get(buf);
      if (written !== undefined) this.owners.delete(buf);
      if (!this.open) {
        written?.();
        continue;
      }
      if (!this.stream.write(buf, written === undefined ? undefined : () => written())) full = true;
    }
    return full;
  }

  /** Waits until everything sent so far has been handed to the stream. */
  flushed(): Promise<void> {
    const sent = this.mutex.run(async () => {});
    const sender = this.sender;
    return sender === undefined ? sent : sent.then(() => sender.idle());
  }

  private async writeAll(buffers: readonly Buffer[]): Promise<void> {
    if (this.writeNow(buffers)) await this.drained();
  }

  /** Resolves on 'drain', or when the stream closes or fails (nothing more will drain). */
  private drained(): Promise<void> {
    const stream = this.stream;
    if (!this.open) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        stream.off('drain', done);
        stream.off('close', done);
        stream.off('error', done);
        resolve();
      };
      stream.on('drain', done);
      stream.on('close', done);
      stream.on('error', done);
    });
  }
}
