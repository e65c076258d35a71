/**
 * Exact-length reads from a stream, for the client side of the protocol (the relay): each
 * `read(n)` resolves with the next `n` bytes, in order. One read waits at a time. Once the
 * stream ends or fails, the waiting read and every later one reject.
 */

import type { Readable } from 'node:stream';

export class ByteReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private waiter:
    | { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void }
    | undefined;
  private failure: Error | undefined;

  constructor(stream: Readable) {
    stream.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.serve();
    });
    const end = (err?: Error) => this.fail(err ?? new Error('the connection closed'));
    stream.once('end', () => end());
    stream.once('close', () => end());
    stream.once('error', end);
  }

  read(n: number): Promise<Buffer> {
    if (this.waiter !== undefined) return Promise.reject(new Error('a read is already waiting'));
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.serve();
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.serve();
  }

  private serve(): void {
    const w = this.waiter;
    if (w === undefined) return;
    if (this.buffered >= w.n) {
      this.waiter = undefined;
      w.resolve(this.take(w.n));
    } else if (this.failure !== undefined) {
      this.waiter = undefined;
      w.reject(this.failure);
    }
  }

  private take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const head = this.chunks[0] as Buffer;
      const count = Math.min(head.length, n - at);
      head.copy(out, at, 0, count);
      at += count;
      if (count === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(count);
    }
    this.buffered -= n;
    return out;
  }
}
