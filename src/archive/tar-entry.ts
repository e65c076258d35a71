/**
 * A layer tar's entry headers as the archive layer uses them, read from tar-stream's
 * headers: names raw (bytes), PAX records byte-exact (xattr values such as
 * security.capability are binary), times with nanoseconds, ids beyond ustar's octal fields.
 *
 * tar-stream decodes PAX records as UTF-8 text, which would mangle binary xattr values, and
 * offers no hook for it; `installBinaryPax()` replaces its decoder (a module-level function
 * of tar-stream/headers.js, looked up at each call) with one that keeps each value's bytes
 * as a raw string. The round-trip tests of binary xattrs catch a tar-stream that changes this.
 */

import { createRequire } from 'node:module';
import type { Header } from 'tar-stream';
import { BadArchiveError } from './errors.js';

/** tar-stream's entry types that a layer may hold. */
export type EntryType =
  | 'file'
  | 'link'
  | 'symlink'
  | 'character-device'
  | 'block-device'
  | 'directory'
  | 'fifo';

export interface Timestamp {
  sec: number;
  nsec: number;
}

/** One entry's header, validated. */
export interface TarEntry {
  /** The name as written (raw), e.g. "./etc/passwd". */
  name: string;
  type: EntryType;
  /** Permission bits with setuid, setgid and sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Timestamp;
  /** From a PAX `atime` record, when present. */
  atime: Timestamp | undefined;
  /** Hard link or symbolic link target (raw), '' otherwise. */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** `SCHILY.xattr.<name>` records: name (raw) and value bytes. */
  xattrs: Array<[string, Buffer]>;
}

const XATTR_PREFIX = 'SCHILY.xattr.';
const KNOWN_TYPES = new Set<string>([
  'file',
  'contiguous-file',
  'link',
  'symlink',
  'character-device',
  'block-device',
  'directory',
  'fifo',
]);

let installed = false;

/** Makes tar-stream keep PAX record values byte for byte (raw strings). Idempotent. */
export function installBinaryPax(): void {
  if (installed) return;
  const require = createRequire(import.meta.url);
  const headersPath = require.resolve('tar-stream').replace(/index\.js$/, 'headers.js');
  const headers = require(headersPath) as { decodePax: (buf: Buffer) => Record<string, string> };
  headers.decodePax = decodePaxRecords;
  installed = true;
}

/**
 * PAX extended header records ("<len> <key>=<value>\n"...) with values as raw strings.
 * A malformed record is a BadArchiveError.
 */
export function decodePaxRecords(buf: Buffer): Record<string, string> {
  const records: Record<string, string> = {};
  let at = 0;
  while (at < buf.length) {
    if (buf[at] === 0) break; // NUL padding after the last record
    const space = buf.indexOf(0x20, at);
    const length = Number.parseInt(buf.toString('latin1', at, space), 10);
    if (space < 0 || !(length > space - at) || at + length > buf.length) {
      throw new BadArchiveError('a PAX extended header has a malformed record length');
    }
    const record = buf.subarray(space + 1, at + length);
    const equals = record.indexOf(0x3d);
    if (equals < 0 || record[record.length - 1] !== 0x0a) {
      throw new BadArchiveError('a PAX extended header has a record without key=value');
    }
    const key = record.toString('latin1', 0, equals);
    records[key] = record.toString('latin1', equals + 1, record.length - 1);
    at += length;
  }
  return records;
}

/** `header` checked and normalised; an unsupported entry is a BadArchiveError naming it. */
export function readEntry(header: Header): TarEntry {
  const name = header.name;
  const type = header.type as string | null;
  if (type === null || !KNOWN_TYPES.has(type)) {
    const what = type === null ? 'an unknown type' : `type '${type}'`;
    throw new BadArchiveError(`the entry has ${what}, which a layer cannot hold`, { entry: name });
  }
  const pax = (header.pax ?? {}) as Record<string, string>;
  if (name.includes('\0') || (header.linkname ?? '').includes('\0')) {
    throw new BadArchiveError('the entry has a NUL byte in its name or link target', {
      entry: name,
    });
  }
  for (const key of Object.keys(pax)) {
    if (
      key.startsWith(XATTR_PREFIX) &&
      (key.length === XATTR_PREFIX.length || key.includes('\0'))
    ) {
      throw new BadArchiveError(`the entry has a bad xattr record '${key}'`, { entry: name });
    }
  }
  if (Object.keys(pax).some((key) => key.startsWith('GNU.sparse.'))) {
    throw new BadArchiveError('GNU sparse files are not supported; make the tar without --sparse', {
      entry: name,
    });
  }
  const size = header.size ?? 0;
  if (type === 'directory' && size !== 0) {
    throw new BadArchiveError(`a directory entry carries ${size} bytes of data`, { entry: name });
  }
  return {
    name,
    type: type === 'contiguous-file' ? 'file' : (type as EntryType),
    mode: (header.mode ?? 0) & 0o7777,
    uid: paxInteger(pax.uid, header.uid ?? 0, name),
    gid: paxInteger(pax.gid, header.gid ?? 0, name),
    size,
    mtime: paxTime(pax.mtime, name) ?? secondsOf(header.mtime),
    atime: paxTime(pax.atime, name),
    linkname: header.linkname ?? '',
    devmajor: header.devmajor ?? 0,
    devminor: header.devminor ?? 0,
    xattrs: Object.entries(pax)
      .filter(([key]) => key.startsWith(XATTR_PREFIX))
      .map(([key, value]) => [key.slice(XATTR_PREFIX.length), Buffer.from(value, 'latin1')]),
  };
}

function secondsOf(date: Date | undefined): Timestamp {
  const ms = date?.getTime() ?? 0;
  return { sec: Math.max(0, Math.floor(ms / 1000)), nsec: 0 };
}

function paxInteger(value: string | undefined, fallback: number, entry: string): number {
  if (value === undefined) return fallback;
  if (!/^\d{1,15}$/.test(value)) {
    throw new BadArchiveError(`PAX record has a bad number '${value}'`, { entry });
  }
  return Number(value);
}

/** A PAX time "1700000000.123456789" (negative times clamp to the epoch). */
export function paxTime(value: string | undefined, entry: string): Timestamp | undefined {
  if (value === undefined) return undefined;
  const match = /^(-?)(\d{1,15})(?:\.(\d{1,9})\d*)?$/.exec(value);
  if (match === null) throw new BadArchiveError(`PAX record has a bad time '${value}'`, { entry });
  if (match[1] === '-') return { sec: 0, nsec: 0 };
  return { sec: Number(match[2]), nsec: Number((match[3] ?? '').padEnd(9, '0')) };
}
