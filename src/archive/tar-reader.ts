/**
 * Reads a layer tar entry by entry: gzip is recognised by its magic and decompressed; other
 * compressions (bzip2, xz, zstd) are refused by name. Each entry's header is validated
 * (tar-entry.ts) and handed to `onEntry` with its data, which is drained afterwards if the
 * handler left any. A truncated or damaged tar is a BadArchiveError.
 */

import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { WritableOptions } from 'streamx';
import { extract } from 'tar-stream';
import { BadArchiveError } from './errors.js';
import { installBinaryPax, readEntry, type TarEntry } from './tar-entry.js';

/** An entry's data: its bytes, once. */
export type EntryData = AsyncIterable<unknown>;

const MAGICS: ReadonlyArray<{ name: string; bytes: readonly number[] }> = [
  { name: 'gzip', bytes: [0x1f, 0x8b] },
  { name: 'bzip2', bytes: [0x42, 0x5a, 0x68] },
  { name: 'xz', bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { name: 'zstd', bytes: [0x28, 0xb5, 0x2f, 0xfd] },
];

/** The compression of a stream that starts with `head`, or undefined for none known. */
export function detectCompression(head: Buffer): string | undefined {
  return MAGICS.find(({ bytes }) => bytes.every((byte, i) => head[i] === byte))?.name;
}

export async function readTar(
  input: Readable,
  onEntry: (entry: TarEntry, data: EntryData) => Promise<void>,
): Promise<void> {
  installBinaryPax();
  const source = await decompressed(input);
  // Old V7 headers (no ustar magic) are accepted, as Go's reader accepts them.
  const tar = extract({ filenameEncoding: 'latin1', allowUnknownFormat: true } as WritableOptions);
  source.on('error', (err) => tar.destroy(asBadArchive(err) as Error));
  let parseError: unknown;
  tar.on('error', (err: unknown) => {
    parseError ??= err;
  });
  source.pipe(tar);
  try {
    for await (const data of tar) {
      const entry = readEntry(data.header);
      await onEntry(entry, data);
      data.resume();
    }
  } catch (err) {
    // An entry's data ends early when the tar does: report why the tar ended.
    await new Promise(setImmediate);
    throw asBadArchive(err instanceof Error && 'hint' in err ? err : (parseError ?? err));
  } finally {
    source.unpipe(tar);
    source.destroy();
  }
}

/** `input`, through gunzip when it starts with gzip's magic. */
async function decompressed(input: Readable): Promise<Readable> {
  const chunks: Buffer[] = [];
  let length = 0;
  const iterator = input[Symbol.asyncIterator]();
  while (length < 6) {
    const next = await iterator.next();
    if (next.done) break;
    chunks.push(next.value as Buffer);
    length += (next.value as Buffer).length;
  }
  const head = Buffer.concat(chunks);
  const compression = detectCompression(head);
  if (compression !== undefined && compression !== 'gzip') {
    throw new BadArchiveError(`the layer is compressed with ${compression}; decompress it first`);
  }
  const rest = Readable.from(
    (async function* () {
      if (head.length > 0) yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value as Buffer;
      }
    })(),
    { objectMode: false },
  );
  if (compression !== 'gzip') return rest;
  const gunzip = createGunzip();
  rest.on('error', (err) => gunzip.destroy(err));
  return rest.pipe(gunzip);
}

/** Errors of the tar parser and of gunzip become BadArchiveErrors; ours pass through. */
function asBadArchive(err: unknown): unknown {
  if (!(err instanceof Error) || 'hint' in err) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return new BadArchiveError(`the gzip stream is damaged or truncated (${err.message})`);
  }
  if (/tar|header|Unexpected end/i.test(err.message)) {
    return new BadArchiveError(`the tar is damaged or truncated (${err.message})`);
  }
  return err;
}
