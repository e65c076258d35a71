/**
 * Serializes everything one connection sends: each `send` writes its buffers back to back,
 * so a reply (header plus payload, or all chunks of a structured reply) is never interleaved
 * with another, and replies go out in the order `send` was called. When the stream reports
 * backpressure (`write()` returns false) the writer waits for 'drain' before the next reply.
 *
 * Once the stream is closed or destroyed, `send` drops its buffers and resolves: a reply to
 * a client that went away is not an error.
 */

import type { Duplex } from 'node:stream';
import { Mutex } from '../util/index.js';

export class ReplyWriter {
  private readonly mutex = new Mutex();
  private queued = 0;

  /** Called whenever the number of replies waiting to be written changes. */
  onChange: () => void = () => {};

  constructor(private readonly stream: Duplex) {}

  /** Replies queued or being written (the connection holds its input when this grows). */
  get pending(): number {
    return this.queued;
  }

  /** True while the stream still accepts bytes. */
  get open(): boolean {
    return !this.stream.destroyed && this.stream.writable;
  }

  /** Writes `buffers` as one uninterrupted unit, after every earlier `send`. */
  async send(...buffers: Buffer[]): Promise<void> {
    this.queued++;
    this.onChange();
    try {
      await this.mutex.run(() => this.writeAll(buffers));
    } finally {
      this.queued--;
      this.onChange();
    }
  }

  /** Waits until everything sent so far has been handed to the stream. */
  flushed(): Promise<void> {
    return this.mutex.run(async () => {});
  }

  private async writeAll(buffers: readonly Buffer[]): Promise<void> {
    let full = false;
    for (const buf of buffers) {
      if (!this.open) return;
      if (!this.stream.write(buf)) full = true;
    }
    if (full) await this.drained();
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
