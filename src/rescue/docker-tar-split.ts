/**
 * Docker's tar-split records (`layerdb/sha256/<chain>/tar-split.json.gz`), turned into
 * thinp's own (graph's tar-split.ts), so that graph's replay can write a layer's tar again
 * byte for byte from the mounted layer, and a saved image keeps its diffIDs and its id.
 *
 * Docker's record (vbatts/tar-split, gzip of one JSON entry per line): `{"type":2,
 * "payload":<base64>}` holds bytes as they were (headers, padding, the end blocks);
 * `{"type":1,"name":<path>,"size":n,"payload":<crc64>}` stands for an entry whose n bytes of
 * contents come from the file at that path (n is 0 for everything but regular files). A name
 * that is not UTF-8 (`name_raw`) cannot be carried over: the conversion fails and the caller
 * falls back to the layer's diff.
 */

import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip, createGzip } from 'node:zlib';
import { LegacyRecordError } from './errors.js';

const SEGMENT = 2;
const FILE = 1;

/** Converts Docker's record `from` into thinp's record `to`; rejects on any failure. */
export async function convertTarSplit(from: string, to: string): Promise<void> {
  const input = createReadStream(from);
  const gunzip = createGunzip();
  input.on('error', (err) => gunzip.destroy(err));
  input.pipe(gunzip);
  const gzip = createGzip();
  const out = createWriteStream(to, { mode: 0o600 });
  const written = pipeline(gzip, out);
  written.catch(() => undefined);
  try {
    const decoder = new StringDecoder('utf8');
    let held = '';
    let n = 0;
    const take = async (line: string) => {
      n++;
      if (line.trim() === '') return;
      const converted = convertEntry(line, `${from}: entry ${n}`);
      if (converted !== undefined && !gzip.write(`${converted}\n`)) await once(gzip, 'drain');
    };
    for await (const chunk of gunzip) {
      const lines = (held + decoder.write(chunk as Buffer)).split('\n');
      held = lines.pop() ?? '';
      for (const line of lines) await take(line);
    }
    await take(held + decoder.end());
    gzip.end();
    await written;
  } catch (err) {
    input.destroy();
    gzip.destroy();
    await written.catch(() => undefined);
    throw err;
  }
}

function convertEntry(line: string, where: string): string | undefined {
  let e: { type?: unknown; name?: unknown; size?: unknown; payload?: unknown };
  try {
    e = JSON.parse(line);
  } catch (cause) {
    throw new LegacyRecordError(where, 'is not valid JSON', cause);
  }
  if (e.type === SEGMENT) {
    if (typeof e.payload !== 'string') throw new LegacyRecordError(where, 'has no payload');
    return JSON.stringify({ raw: e.payload });
  }
  if (e.type !== FILE) throw new LegacyRecordError(where, `has an unknown type ${String(e.type)}`);
  const size = e.size ?? 0;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new LegacyRecordError(where, 'has no size');
  }
  if (size === 0) return undefined;
  if (typeof e.name !== 'string') {
    throw new LegacyRecordError(where, 'names its file in raw bytes, which thinp cannot replay');
  }
  return JSON.stringify({ file: e.name, size });
}
