/**
 * Parsers for the data of the options that carry structured data (NBD_OPT_INFO / GO and
 * NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT). They trust nothing: every length is checked
 * against what is left, and every string must be valid UTF-8 without NUL and at most 4096
 * bytes. A parse failure is a message for an NBD_REP_ERR_INVALID reply, never an exception.
 */

import { MAX_STRING_LENGTH } from './wire.js';

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

export interface InfoRequest {
  name: string;
  /** The NBD_INFO_* types requested, in order. */
  infos: number[];
}

export interface MetaContextRequest {
  name: string;
  queries: string[];
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** A cursor over option data that reports the first problem. */
class Reader {
  private at = 0;
  problem: string | undefined;

  constructor(private readonly data: Buffer) {}

  get remaining(): number {
    return this.data.length - this.at;
  }

  u16(what: string): number {
    if (!this.has(2, what)) return 0;
    const v = this.data.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }

  u32(what: string): number {
    if (!this.has(4, what)) return 0;
    const v = this.data.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  /** A string of `length` bytes. */
  string(length: number, what: string): string {
    if (length > MAX_STRING_LENGTH) this.fail(`${what} is longer than ${MAX_STRING_LENGTH} bytes`);
    if (!this.has(length, what)) return '';
    const bytes = this.data.subarray(this.at, this.at + length);
    this.at += length;
    if (bytes.includes(0)) this.fail(`${what} contains NUL`);
    try {
      return decoder.decode(bytes);
    } catch {
      this.fail(`${what} is not valid UTF-8`);
      return '';
    }
  }

  fail(message: string): void {
    this.problem ??= message;
  }

  private has(n: number, what: string): boolean {
    if (this.problem !== undefined) return false;
    if (this.remaining >= n) return true;
    this.fail(`option data ends inside the ${what}`);
    return false;
  }
}

function finish<T>(reader: Reader, value: T): Parsed<T> {
  if (reader.problem === undefined && reader.remaining > 0) {
    reader.fail(`${reader.remaining} bytes of option data left over`);
  }
  return reader.problem === undefined
    ? { ok: true, value }
    : { ok: false, message: reader.problem };
}

/** NBD_OPT_INFO / NBD_OPT_GO: name length, name, count, then `count` u16 info types. */
export function parseInfoRequest(data: Buffer): Parsed<InfoRequest> {
  const r = new Reader(data);
  const name = r.string(r.u32('export name length'), 'export name');
  const count = r.u16('information request count');
  const infos: number[] = [];
  for (let i = 0; i < count && r.problem === undefined; i++)
    infos.push(r.u16('information request'));
  return finish(r, { name, infos });
}

/** NBD_OPT_LIST/SET_META_CONTEXT: name length, name, count, then `count` length-prefixed queries. */
export function parseMetaContextRequest(data: Buffer): Parsed<MetaContextRequest> {
  const r = new Reader(data);
  const name = r.string(r.u32('export name length'), 'export name');
  const count = r.u32('query count');
  const queries: string[] = [];
  for (let i = 0; i < count && r.problem === undefined; i++) {
    queries.push(r.string(r.u32('query length'), 'query'));
  }
  return finish(r, { name, queries });
}

/** An export name sent as the whole data of NBD_OPT_EXPORT_NAME. */
export function parseExportName(data: Buffer): Parsed<string> {
  const r = new Reader(data);
  return finish(r, r.string(data.length, 'export name'));
}
