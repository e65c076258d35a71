/**
 * Layer tars reproduced byte for byte, the way Docker's tar-split does it: while a layer tar
 * is applied, its bytes are recorded except the contents of regular files, which stay in
 * the layer's filesystem; to write the layer again, the record is replayed with each file's
 * contents read back from the mounted layer. The result has the original bytes, so the same
 * diffID, and the image keeps its id through `thinp image save`.
 *
 * The record (`<layer>.split.gz`, gzip of newline-delimited JSON): `{"raw": base64}` for
 * bytes kept as they were (headers, PAX and GNU long-name data, padding, the end blocks) and
 * `{"file": name, "size": n}` for the contents of a regular file. Names follow PAX `path`,
 * then GNU long names, then ustar prefix + name.
 *
 * Replay reads a mounted tree, so it runs in a child process (REPLAY_SCRIPT, plain
 * JavaScript given to `node -e`, which works the same from dist/ and under tsx). A file that
 * is missing, not regular, of another size, or named outside the root fails the replay;
 * the caller then falls back to the layer's diff.
 */

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { PassThrough, type Readable, Transform, type TransformCallback } from 'node:stream';
import { createGzip, type Gzip } from 'node:zlib';
import { BadInputError } from '../util/index.js';

const BLOCK = 512;
/** Typeflags whose data is the contents of a regular file. */
const FILE_TYPES = new Set(['0', '\0', '7']);
/** PAX and GNU long-name data is kept whole to read names from; larger is refused. */
const MAX_META_BYTES = 1024 * 1024;

type State =
  | { kind: 'header' }
  | { kind: 'meta'; type: string; left: number; pad: number; data: Buffer[] }
  | { kind: 'content'; left: number; pad: number }
  | { kind: 'padding'; left: number };

/** Passes a tar through unchanged and writes its record to `file`. */
export class TarSplitRecorder extends Transform {
  private readonly gzip: Gzip = createGzip();
  private readonly written: Promise<unknown>;
  private state: State = { kind: 'header' };
  private held = Buffer.alloc(0);
  private raw: Buffer[] = [];
  private paxPath: string | undefined;
  private longName: string | undefined;

  constructor(file: string) {
    super();
    const out = createWriteStream(file, { mode: 0o600 });
    this.gzip.pipe(out);
    this.written = once(out, 'finish');
    this.written.catch(() => undefined);
  }

  /** Reads what the consumer left unread, then resolves once the record is on disk. */
  async finished(): Promise<void> {
    if (!this.writableFinished) {
      this.resume();
      await once(this, 'finish');
    }
    await this.written;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.consume(chunk);
      done(null, chunk);
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    if (this.held.length > 0) this.raw.push(this.held);
    this.flushRaw();
    this.gzip.end(() => done());
  }

  private consume(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const s = this.state;
      if (s.kind === 'header') {
        const need = BLOCK - this.held.length;
        const part = chunk.subarray(at, at + need);
        this.held = this.held.length === 0 ? Buffer.from(part) : Buffer.concat([this.held, part]);
        at += part.length;
        if (this.held.length === BLOCK) this.header(this.held);
        continue;
      }
      const n = Math.min(s.left, chunk.length - at);
      const part = chunk.subarray(at, at + n);
      at += n;
      s.left -= n;
      if (s.kind === 'meta') s.data.push(Buffer.from(part));
      if (s.kind !== 'content') this.raw.push(Buffer.from(part));
      if (s.left === 0) this.endData(s);
    }
  }

  private header(block: Buffer): void {
    this.held = Buffer.alloc(0);
    this.raw.push(block);
    if (block.every((b) => b === 0)) return;
    const type = String.fromCharCode(block[156] ?? 0);
    const size = octal(block.subarray(124, 136));
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (type === 'x' || type === 'g' || type === 'L') {
      if (size > MAX_META_BYTES) throw tooBig(size);
      this.state =
        size === 0 ? { kind: 'header' } : { kind: 'meta', type, left: size, pad, data: [] };
      return;
    }
    const name = this.paxPath ?? this.longName ?? ustarName(block);
    this.paxPath = undefined;
    this.longName = undefined;
    if (size === 0) return;
    if (FILE_TYPES.has(type)) {
      this.flushRaw();
      this.line({ file: name, size });
      this.state = { kind: 'content', left: size, pad };
    } else {
      this.state = { kind: 'padding', left: size + pad };
    }
  }

  private endData(s: Exclude<State, { kind: 'header' }>): void {
    if (s.kind === 'meta') {
      const data = Buffer.concat(s.data);
      if (s.type === 'x') this.paxPath = paxRecord(data, 'path') ?? this.paxPath;
      if (s.type === 'L') this.longName = data.toString('utf8').replace(/\0.*$/s, '');
    }
    this.state =
      s.kind === 'padding' || s.pad === 0 ? { kind: 'header' } : { kind: 'padding', left: s.pad };
  }

  private flushRaw(): void {
    if (this.raw.length === 0) return;
    this.line({ raw: Buffer.concat(this.raw).toString('base64') });
    this.raw = [];
  }

  private line(value: unknown): void {
    this.gzip.write(`${JSON.stringify(value)}\n`);
  }
}

function octal(field: Buffer): number {
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + (field[i] ?? 0);
    return n;
  }
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim();
  return text === '' ? 0 : Number.parseInt(text, 8);
}

function ustarName(block: Buffer): string {
  const text = (b: Buffer) => b.toString('utf8').replace(/\0.*$/s, '');
  const name = text(block.subarray(0, 100));
  const ustar = block.subarray(257, 262).toString('latin1') === 'ustar';
  const prefix = ustar ? text(block.subarray(345, 500)) : '';
  return prefix === '' ? name : `${prefix}/${name}`;
}

/** The value of `key` in PAX extended header data ("len key=value\n" records). */
function paxRecord(data: Buffer, key: string): string | undefined {
  let found: string | undefined;
  for (let at = 0; at < data.length; ) {
    const space = data.indexOf(0x20, at);
    const len = Number.parseInt(data.subarray(at, space).toString('latin1'), 10);
    if (space < 0 || !(len > 0)) break;
    const record = data.subarray(space + 1, at + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (record.slice(0, eq) === key) found = record.slice(eq + 1);
    at += len;
  }
  return found;
}

function tooBig(size: number): BadInputError {
  return new BadInputError(`a layer tar has ${size} bytes of PAX or long-name data`, {
    hint: `names and PAX records are kept under ${MAX_META_BYTES} bytes; rebuild the layer`,
  });
}

// ---------------------------------------------------------------------------------------
// Replay, in a child process

export const REPLAY_SCRIPT = `
'use strict';
const fs = require('fs'), zlib = require('zlib'), path = require('path'), readline = require('readline');
const [record, root] = process.argv.slice(1);
const realRoot = fs.realpathSync(root);
const fail = (why) => { process.stderr.write(why + '\\n'); process.exit(3); };
const write = (buf) => new Promise((ok) => (process.stdout.write(buf) ? ok() : process.stdout.once('drain', ok)));
async function copyFile(name, size) {
  const clean = path.posix.normalize('/' + name).slice(1);
  if (clean === '' || clean.split('/').includes('..')) fail('bad name ' + name);
  const file = path.join(realRoot, clean);
  const dir = fs.realpathSync(path.dirname(file));
  if (dir !== realRoot && !dir.startsWith(realRoot + '/')) fail('outside the root: ' + name);
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.size !== size) fail('changed: ' + name);
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (let done = 0; done < size; ) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, size - done), done);
      if (n <= 0) fail('short read: ' + name);
      await write(Buffer.from(buf.subarray(0, n)));
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}
(async () => {
  const lines = readline.createInterface({ input: fs.createReadStream(record).pipe(zlib.createGunzip()) });
  for await (const line of lines) {
    if (line === '') continue;
    const seg = JSON.parse(line);
    if (seg.raw !== undefined) await write(Buffer.from(seg.raw, 'base64'));
    else await copyFile(seg.file, seg.size);
  }
})().catch((err) => fail(String(err && err.message)));
`;

/**
 * The layer tar `record` describes, with file contents from `root` (a mounted layer), made
 * by a child process; the stream errors when the replay fails.
 */
export function replayTar(record: string, root: string): Readable {
  const child = spawn(process.execPath, ['-e', REPLAY_SCRIPT, record, root], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = new PassThrough();
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  child.stdout.pipe(out, { end: false });
  child.on('error', (err) => out.destroy(err));
  child.on('close', (code) => {
    if (code === 0) out.end();
    else out.destroy(new Error(`replay of ${record} failed: ${stderr.trim() || `status ${code}`}`));
  });
  return out;
}
