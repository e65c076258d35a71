/**
 * Raw bytes through the process's standard streams, for `device read` and `device write`:
 * output waits while the stream is full and fails with an IoError when the reader went
 * away; input comes in the chunks the stream gives (a test may give its own source).
 */

import type { EventEmitter } from 'node:events';
import { once } from 'node:events';
import { IoError } from '../util/index.js';
import type { CliIo, TextSink } from './io.js';

/** The CLI's streams, plus standard input (a test may give its own). */
export type ByteIo = CliIo & { stdin?: AsyncIterable<Uint8Array | string> };

export type ByteSink = (chunk: Uint8Array) => Promise<void>;

/** Runs `write` with a sink of bytes to standard output. */
export async function bytesToStdout(
  out: TextSink,
  write: (sink: ByteSink) => Promise<void>,
): Promise<void> {
  const raw = out as unknown as { write(chunk: Uint8Array): boolean };
  const stream = out as TextSink & Partial<EventEmitter>;
  if (typeof stream.on !== 'function' || typeof stream.off !== 'function') {
    return write(async (chunk) => void raw.write(chunk));
  }
  let failure: unknown;
  const onError = (error: unknown) => {
    failure ??= error;
  };
  const check = () => {
    if (failure === undefined) return;
    const message = failure instanceof Error ? failure.message : String(failure);
    throw new IoError('standard output', 'write', message, { cause: failure });
  };
  stream.on('error', onError);
  try {
    await write(async (chunk) => {
      check();
      if (!raw.write(chunk)) await once(stream as EventEmitter, 'drain').catch(onError);
      check();
    });
  } finally {
    stream.off('error', onError);
  }
}

/** Standard input as byte chunks. */
export async function* stdinBytes(io: ByteIo): AsyncGenerator<Uint8Array> {
  for await (const chunk of io.stdin ?? process.stdin) {
    yield typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
  }
}
