/**
 * Writes tar streams: ustar headers (POSIX.1-1988 layout below), a PAX extended header
 * before an entry whose name, link target, ids or time do not fit (or that has xattrs),
 * data padded to 512-byte blocks, and two zero blocks at the end. Names are raw (one char
 * per byte) and written byte for byte. tar-stream (which reads our layers) writes PAX
 * records as UTF-8 text and mode 0 as 0644, so diffs are written here.
 *
 *   field     offset size  encoding
 *   name          0  100   bytes, NUL-padded
 *   mode        100    8   7 octal digits + NUL (permission bits 07777)
 *   uid         108    8   7 octal digits + NUL
 *   gid         116    8   7 octal digits + NUL
 *   size        124   12   11 octal digits + NUL, or base-256 (0x80 first) beyond
 *   mtime       136   12   11 octal digits + NUL
 *   chksum      148    8   6 octal digits + NUL + space: sum of the header's bytes,
 *                          this field counted as spaces
 *   typeflag    156    1   '0' file, '1' hard link, '2' symlink, '3' char, '4' block,
 *                          '5' directory, '6' fifo, 'x' PAX extended header
 *   linkname    157  100   bytes, NUL-padded
 *   magic       257    6   "ustar\0"
 *   version     263    2   "00"
 *   uname       265   32   (empty: Docker writes no names)
 *   gname       297   32   (empty)
 *   devmajor    329    8   7 octal digits + NUL
 *   devminor    337    8   7 octal digits + NUL
 *   prefix      345  155   bytes: the directory part of a name longer than 100
 */

import { once } from 'node:events';
import type { Writable } from 'node:stream';

export const BLOCK = 512;

export const USTAR = {
  name: { offset: 0, size: 100 },
  mode: { offset: 100, size: 8 },
  uid: { offset: 108, size: 8 },
  gid: { offset: 116, size: 8 },
  size: { offset: 124, size: 12 },
  mtime: { offset: 136, size: 12 },
  chksum: { offset: 148, size: 8 },
  typeflag: { offset: 156, size: 1 },
  linkname: { offset: 157, size: 100 },
  magic: { offset: 257, size: 6 },
  version: { offset: 263, size: 2 },
  devmajor: { offset: 329, size: 8 },
  devminor: { offset: 337, size: 8 },
  prefix: { offset: 345, size: 155 },
} as const;

export const TYPEFLAG = {
  file: '0',
  link: '1',
  symlink: '2',
  'character-device': '3',
  'block-device': '4',
  directory: '5',
  fifo: '6',
  pax: 'x',
} as const;

export type WriteType = keyof typeof TYPEFLAG;

/** An entry to write; `name` and `linkname` are raw. */
export interface WriteHeader {
  name: string;
  type: WriteType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Whole seconds since the epoch. */
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
}

/** The largest value of a 7-digit octal field (mode, uid, gid, devices). */
const OCTAL7_MAX = 0o7777777;
/** The largest value of an 11-digit octal field (size, mtime). */
const OCTAL11_MAX = 0o77777777777;

/** PAX records "<length> <key>=<value>\n" for raw `key=value` pairs, in their order. */
export function paxBody(records: ReadonlyArray<[string, string]>): Buffer {
  return Buffer.concat(
    records.map(([key, value]) => {
      const body = Buffer.from(` ${key}=${value}\n`, 'latin1');
      let length = body.length + 1;
      while (String(length).length + body.length !== length)
        length = String(length).length + body.length;
      return Buffer.concat([Buffer.from(String(length)), body]);
    }),
  );
}

/** Whether raw `text` is ASCII without NUL (so that a ustar field holds it as is). */
function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0 || code > 0x7f) return false;
  }
  return true;
}

/** Where raw `name` splits into a ustar prefix and name, or undefined if it cannot. */
function splitName(name: string): { prefix: string; name: string } | undefined {
  if (!isAscii(name)) return undefined; // keep non-ASCII names in PAX
  if (name.length <= USTAR.name.size) return { prefix: '', name };
  for (let at = name.indexOf('/'); at >= 0; at = name.indexOf('/', at + 1)) {
    const rest = name.slice(at + 1);
    if (at <= USTAR.prefix.size && rest.length <= USTAR.name.size && rest !== '' && rest !== '/') {
      return { prefix: name.slice(0, at), name: rest };
    }
  }
  return undefined;
}

/**
 * The PAX records `header` needs besides `extra` (path, linkpath, uid, gid, mtime), and
 * the header with the fields that moved into them replaced by stand-ins that fit.
 */
export function overflowRecords(header: WriteHeader): {
  records: Array<[string, string]>;
  header: WriteHeader;
} {
  const records: Array<[string, string]> = [];
  const fitted = { ...header };
  if (splitName(header.name) === undefined) {
    records.push(['path', header.name]);
    fitted.name = standIn(header.name, USTAR.name.size);
  }
  if (header.linkname.length > USTAR.linkname.size || !isAscii(header.linkname)) {
    records.push(['linkpath', header.linkname]);
    fitted.linkname = standIn(header.linkname, USTAR.linkname.size);
  }
  for (const key of ['uid', 'gid'] as const) {
    if (header[key] > OCTAL7_MAX) {
      records.push([key, String(header[key])]);
      fitted[key] = 0;
    }
  }
  if (header.mtime < 0 || header.mtime > OCTAL11_MAX) {
    records.push(['mtime', String(header.mtime)]);
    fitted.mtime = 0;
  }
  return { records, header: fitted };
}

/** A printable ASCII stand-in for raw `name`, at most `max` bytes, keeping a trailing '/'. */
function standIn(name: string, max: number): string {
  const slash = name.endsWith('/') ? '/' : '';
  const printable = name.replace(/[^\x20-\x7e]/g, '_');
  return printable.length <= max ? printable : `${printable.slice(0, max - slash.length)}${slash}`;
}

/** The 512-byte ustar header of `header`, whose fields must fit (see overflowRecords). */
export function encodeHeader(header: WriteHeader): Buffer {
  const block = Buffer.alloc(BLOCK);
  const split = splitName(header.name) ?? {
    prefix: '',
    name: header.name.slice(0, USTAR.name.size),
  };
  block.write(split.name, USTAR.name.offset, USTAR.name.size, 'latin1');
  writeOctal(block, USTAR.mode, header.mode & 0o7777);
  writeOctal(block, USTAR.uid, header.uid);
  writeOctal(block, USTAR.gid, header.gid);
  writeSize(block, header.size);
  writeOctal(block, USTAR.mtime, header.mtime);
  block.write(TYPEFLAG[header.type], USTAR.typeflag.offset, 'latin1');
  block.write(header.linkname, USTAR.linkname.offset, USTAR.linkname.size, 'latin1');
  block.write('ustar\u000000', USTAR.magic.offset, 'latin1');
  writeOctal(block, USTAR.devmajor, header.devmajor);
  writeOctal(block, USTAR.devminor, header.devminor);
  block.write(split.prefix, USTAR.prefix.offset, USTAR.prefix.size, 'latin1');
  block.fill(0x20, USTAR.chksum.offset, USTAR.chksum.offset + USTAR.chksum.size);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, USTAR.chksum.offset, 'latin1');
  return block;
}

function writeOctal(block: Buffer, field: { offset: number; size: number }, value: number): void {
  const digits = Math.max(0, Math.min(value, 8 ** (field.size - 1) - 1)).toString(8);
  block.write(`${digits.padStart(field.size - 1, '0')}\u0000`, field.offset, 'latin1');
}

function writeSize(block: Buffer, size: number): void {
  if (size <= OCTAL11_MAX) {
    writeOctal(block, USTAR.size, size);
    return;
  }
  // Base-256: 0x80, then the value big-endian in the remaining 11 bytes.
  block[USTAR.size.offset] = 0x80;
  let rest = BigInt(size);
  for (let i = USTAR.size.size - 1; i > 0; i--) {
    block[USTAR.size.offset + i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
}

/** Writes entries to `out` with backpressure. */
export class TarWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly out: Writable) {}

  /** One entry: a PAX header first when needed (plus `extra` records), then the data. */
  async entry(
    header: WriteHeader,
    extra: ReadonlyArray<[string, string]>,
    data?: AsyncIterable<unknown> | Iterable<unknown>,
  ): Promise<void> {
    const { records, header: fitted } = overflowRecords(header);
    const pax = [...records, ...extra];
    if (pax.length > 0) {
      const body = paxBody(pax);
      const base = fitted.name.replace(/\/$/, '').split('/').pop() ?? '';
      const paxHeader = {
        ...fitted,
        name: `PaxHeaders.0/${base}`.slice(0, 100),
        type: 'pax' as const,
        size: body.length,
        linkname: '',
      };
      await this.write(encodeHeader({ ...paxHeader, mode: 0o644 }));
      await this.write(body);
      await this.pad(body.length);
    }
    await this.write(encodeHeader(fitted));
    let written = 0;
    for await (const chunk of data ?? []) {
      written += (chunk as Buffer).length;
      if (written > header.size) break;
      await this.write(chunk as Buffer);
    }
    if (written !== header.size) {
      throw new Error(
        `${header.name} changed size while it was archived (${written} of ${header.size} bytes)`,
      );
    }
    await this.pad(header.size);
  }

  /** The end-of-archive marker: two zero blocks; resolves once they are handed on. */
  async end(): Promise<void> {
    await this.write(Buffer.alloc(2 * BLOCK));
    await this.flush();
    await new Promise<void>((resolve, reject) => {
      this.out.write(Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  }

  private async pad(size: number): Promise<void> {
    const rest = size % BLOCK;
    if (rest !== 0) await this.write(Buffer.alloc(BLOCK - rest));
  }

  /** Small pieces (headers, padding, small files) are gathered into writes of ~64 KiB. */
  private async write(bytes: Buffer): Promise<void> {
    if (bytes.length >= GATHER) {
      await this.flush();
      await this.send(bytes);
      return;
    }
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= GATHER) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const gathered = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.send(gathered);
  }

  private async send(bytes: Buffer): Promise<void> {
    if (!this.out.write(bytes)) await once(this.out, 'drain');
  }
}

/** The size of the writes that small pieces are gathered into. */
const GATHER = 64 * 1024;
