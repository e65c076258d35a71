/**
 * The thin_dump XML reader: a hand-written, incremental parser for the four elements of
 * dm-thin-format.md §13.1. It reads the input chunk by chunk and keeps only the unfinished
 * tag between chunks, so a dump of hundreds of megabytes never sits in memory whole.
 *
 * It checks the grammar only (which element may appear where, which attributes each one
 * has, that numbers are unsigned decimal safe integers); the limits of the on-disk format
 * are `ImageLimitChecker`'s business. Every error is a `DumpXmlError` whose message starts
 * with the line and column of the fault.
 */

import { StringDecoder } from 'node:string_decoder';
import { BadInputError, closestMatch } from '../../util/index.js';
import {
  type DeviceInfo,
  ImageBuilder,
  type MappingRun,
  type MetadataImage,
  type SuperblockInfo,
  type XmlEvent,
  type XmlPosition,
} from './metadata-image.js';

/** Malformed dump XML; `at` is where the fault is and `reason` what it is. */
export class DumpXmlError extends BadInputError {
  override readonly code = 'DUMP_XML';
  readonly at: XmlPosition;
  readonly reason: string;

  constructor(reason: string, at: XmlPosition, hint?: string) {
    super(`line ${at.line}, column ${at.column}: ${reason}`, hint === undefined ? {} : { hint });
    this.at = at;
    this.reason = reason;
  }
}

/** Reads a dump incrementally and yields its events in document order. */
export async function* readDumpXml(
  source: AsyncIterable<string | Buffer>,
): AsyncGenerator<XmlEvent> {
  const parser = new DumpXmlParser();
  const decoder = new StringDecoder('utf8');
  for await (const chunk of source) {
    yield* parser.push(typeof chunk === 'string' ? decoder.end() + chunk : decoder.write(chunk));
  }
  yield* parser.push(decoder.end());
  yield* parser.finish();
}

/** Parses a whole dump held in memory. */
export function parseDumpXml(text: string): MetadataImage {
  const parser = new DumpXmlParser();
  const builder = new ImageBuilder();
  for (const event of parser.push(text)) builder.add(event);
  for (const event of parser.finish()) builder.add(event);
  return builder.image();
}

type ElementName = 'superblock' | 'device' | 'single_mapping' | 'range_mapping';

interface ElementSpec {
  required: readonly string[];
  optional: readonly string[];
}

const ELEMENTS: Readonly<Record<ElementName, ElementSpec>> = {
  superblock: {
    required: ['time', 'transaction', 'data_block_size', 'nr_data_blocks'],
    optional: ['uuid', 'flags', 'version', 'metadata_snap'],
  },
  device: {
    required: ['dev_id', 'transaction', 'creation_time', 'snap_time'],
    optional: ['mapped_blocks'],
  },
  single_mapping: { required: ['origin_block', 'data_block', 'time'], optional: [] },
  range_mapping: { required: ['origin_begin', 'data_begin', 'length', 'time'], optional: [] },
};
const ELEMENT_NAMES = Object.keys(ELEMENTS);
const KNOWN = new Map<string, ReadonlySet<string>>(
  Object.entries(ELEMENTS).map(([name, spec]) => [
    name,
    new Set([...spec.required, ...spec.optional]),
  ]),
);

function isElementName(name: string): name is ElementName {
  return Object.hasOwn(ELEMENTS, name);
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const DIGITS = /^[0-9]+$/;
const ENTITY = /&(?:#x([0-9A-Fa-f]{1,6})|#([0-9]{1,7})|(lt|gt|amp|quot|apos));/g;
const BAD_AMPERSAND = /&(?!(?:#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|lt|gt|amp|quot|apos);)/;
const NAMED_ENTITIES: Readonly<Record<string, string>> = {
  lt: '<',
  gt: '>',
  amp: '&',
  quot: '"',
  apos: "'",
};
const LT = 0x3c;
const FAST_SINGLE = /<single_mapping origin_block="(\d+)" data_block="(\d+)" time="(\d+)"\/>/y;
const FAST_RANGE =
  /<range_mapping origin_begin="(\d+)" data_begin="(\d+)" length="(\d+)" time="(\d+)"\/>/y;
/** Events handed out together: fewer generator steps, little memory. */
const BATCH = 256;

interface OpenElement {
  name: ElementName;
  at: XmlPosition;
}

interface Attribute {
  value: string;
  /** Offsets in the buffer of the name and of the value's first character. */
  nameOffset: number;
  valueOffset: number;
}

interface Tag {
  name: ElementName;
  start: number;
  at: XmlPosition;
  attributes: Map<string, Attribute>;
  selfClosing: boolean;
}

/**
 * The parser's state between chunks. `push` takes the next piece of text and yields the
 * events it completes; `finish` says the input has ended and fails on anything left open.
 */
class DumpXmlParser {
  private buf = '';
  /** Offset in `buf` of the first character not yet consumed. */
  private pos = 0;
  /** Offset in the whole input of `buf[0]`. */
  private base = 0;
  private line = 1;
  /** Offset in the whole input where `line` starts. */
  private lineStart = 0;
  private eof = false;
  private sawSuperblock = false;
  private readonly open: OpenElement[] = [];
  /** Events completed by the steps taken so far and not yet handed out. */
  private out: XmlEvent[] = [];

  *push(text: string): Generator<XmlEvent> {
    if (this.base === 0 && this.buf === '' && text.startsWith('\uFEFF')) text = text.slice(1);
    this.base += this.pos;
    this.buf = this.buf.slice(this.pos) + text;
    this.pos = 0;
    yield* this.steps();
  }

  *finish(): Generator<XmlEvent> {
    this.eof = true;
    yield* this.steps();
    const top = this.open.at(-1);
    if (top !== undefined) {
      const closers = this.open.map((element) => `</${element.name}>`).reverse();
      this.fail(
        this.buf.length,
        `the input ends inside <${top.name}> opened at ${describe(top.at)}`,
        `the dump is cut short: add ${closers.join('')} or dump the pool again`,
      );
    }
    if (!this.sawSuperblock) {
      this.fail(this.buf.length, 'the input holds no <superblock>', HINT_START);
    }
  }

  /** Yields the events of every markup the buffer holds whole, a batch at a time. */
  private *steps(): Generator<XmlEvent> {
    while (this.step()) {
      if (this.out.length >= BATCH) yield* this.takeEvents();
    }
    yield* this.takeEvents();
  }

  private takeEvents(): XmlEvent[] {
    const events = this.out;
    this.out = [];
    return events;
  }

  /** Consumes the next whole markup, if the buffer holds one; says whether it did. */
  private step(): boolean {
    const start = this.skipSpace();
    if (start >= this.buf.length) return false;
    if (this.buf.charCodeAt(start) !== LT) {
      this.fail(start, 'text is not allowed here', 'only tags may appear in a dump: remove it');
    }
    if (this.fastMapping(start)) return true;
    const end = this.markupEnd(start);
    if (end < 0) return false;
    this.markup(start, end);
    this.advance(end);
    return true;
  }

  /**
   * Consumes a mapping written exactly as thin_dump writes it, without the general tag
   * reader, and says whether it did. Anything else, including a mapping in the wrong place
   * or with too large a number, is left to the general reader and its error messages.
   */
  private fastMapping(start: number): boolean {
    if (this.open.at(-1)?.name !== 'device') return false;
    const single = this.buf.charCodeAt(start + 1) === 0x73; // 's'
    const pattern = single ? FAST_SINGLE : FAST_RANGE;
    pattern.lastIndex = start;
    const match = pattern.exec(this.buf);
    if (match === null) return false;
    const numbers = match.slice(1).map(Number);
    if (!numbers.every(Number.isSafeInteger)) return false;
    const [vblock = 0, dataBlock = 0, third = 0, fourth = 0] = numbers;
    const run: MappingRun = single
      ? { vblock, dataBlock, length: 1, time: third }
      : { vblock, dataBlock, length: third, time: fourth };
    const at = { line: this.line, column: this.base + start - this.lineStart + 1 };
    this.out.push({ kind: 'run', run, at });
    this.pos = start + match[0].length;
    return true;
  }

  /** The offset just after the markup starting at `start`, or -1 if it is not all here. */
  private markupEnd(start: number): number {
    const next = this.buf[start + 1];
    if (next === undefined) {
      return this.eof ? this.fail(start, 'the input ends inside a tag', HINT_CUT) : -1;
    }
    if (next === '?') return this.find(start, '?>', 'the <? declaration is not closed by ?>');
    if (next !== '!') return this.tagEnd(start);
    if (this.buf.length - start < 4 && !this.eof) return -1;
    if (this.buf.startsWith('<!--', start)) {
      return this.find(start, '-->', 'the comment is not closed by -->');
    }
    return this.fail(start, "'<!' markup is not allowed here", 'only comments <!-- --> may be');
  }

  private find(start: number, terminator: string, problem: string): number {
    const found = this.buf.indexOf(terminator, start + 2);
    if (found >= 0) return found + terminator.length;
    return this.eof ? this.fail(start, problem, HINT_CUT) : -1;
  }

  /** The end of a tag: the first '>' outside quotes. A '<' before it is an error. */
  private tagEnd(start: number): number {
    const buf = this.buf;
    let quote = '';
    for (let i = start + 1; i < buf.length; i++) {
      const c = buf[i];
      if (c === '<') this.unclosedTag(start);
      if (quote !== '') {
        if (c === quote) quote = '';
      } else if (c === '"' || c === "'") {
        quote = c;
      } else if (c === '>') {
        return i + 1;
      }
    }
    return this.eof ? this.unclosedTag(start) : -1;
  }

  private unclosedTag(start: number): never {
    NAME.lastIndex = start + 1 + (this.buf[start + 1] === '/' ? 1 : 0);
    const name = NAME.exec(this.buf)?.[0] ?? '';
    return this.fail(start, `the tag <${name}> does not end with '>'`, 'is a quote missing?');
  }

  private markup(start: number, end: number): void {
    const next = this.buf[start + 1];
    if (next === '?' || next === '!') return;
    if (next === '/') this.endTag(start, end);
    else this.startTag(this.readTag(start, end));
  }

  private endTag(start: number, end: number): void {
    const name = this.elementName(start, start + 2);
    const after = skipSpace(this.buf, start + 2 + name.length);
    if (after !== end - 1) this.fail(after, `expected '>' to end </${name}>`);
    const top = this.open.at(-1);
    if (top === undefined) {
      this.fail(start, `</${name}> closes nothing`, 'remove it');
    }
    if (top.name !== name) {
      this.fail(
        start,
        `</${name}> does not match <${top.name}> opened at ${describe(top.at)}`,
        `close <${top.name}> with </${top.name}> first`,
      );
    }
    this.open.pop();
    if (name === 'device') this.out.push({ kind: 'endDevice', at: this.where(start) });
    if (name === 'superblock') this.out.push({ kind: 'end', at: this.where(start) });
  }

  /** The known element name at `offset`; fails on a missing or unknown one. */
  private elementName(start: number, offset: number): ElementName {
    NAME.lastIndex = offset;
    const name = NAME.exec(this.buf)?.[0];
    if (name === undefined) this.fail(offset, "expected an element name after '<'");
    if (!isElementName(name)) {
      const guess = closestMatch(name, ELEMENT_NAMES);
      this.fail(
        start,
        `unknown tag type <${name}>`,
        guess === undefined
          ? `a dump holds only ${ELEMENT_NAMES.map((n) => `<${n}>`).join(', ')}`
          : `did you mean <${guess}>?`,
      );
    }
    return name;
  }

  private readTag(start: number, end: number): Tag {
    const name = this.elementName(start, start + 1);
    const attributes = new Map<string, Attribute>();
    let offset = start + 1 + name.length;
    for (;;) {
      const next = skipSpace(this.buf, offset);
      const c = this.buf[next];
      if (c === '>' || c === '/') {
        if (c === '/' && next !== end - 2) this.fail(next, "expected '>' after '/'");
        return { name, start, at: this.where(start), attributes, selfClosing: c === '/' };
      }
      if (next === offset) this.fail(next, `expected a space before the attribute in <${name}>`);
      offset = this.readAttribute(name, next, attributes);
    }
  }

  /** Reads `name="value"` at `offset` into `attributes`; returns the offset after it. */
  private readAttribute(element: string, offset: number, attributes: Map<string, Attribute>) {
    const buf = this.buf;
    NAME.lastIndex = offset;
    const name = NAME.exec(buf)?.[0];
    if (name === undefined) {
      this.fail(offset, `expected an attribute name in <${element}>, found '${buf[offset]}'`);
    }
    let next = skipSpace(buf, offset + name.length);
    if (buf[next] !== '=') this.fail(next, `expected '=' after the attribute ${name}`);
    next = skipSpace(buf, next + 1);
    const quote = buf[next];
    if (quote !== '"' && quote !== "'") {
      this.fail(next, `the value of the attribute ${name} must be in quotes`);
    }
    const close = buf.indexOf(quote, next + 1);
    if (attributes.has(name)) {
      this.fail(offset, `<${element}> has the attribute ${name} twice`, 'remove one of them');
    }
    const value = buf.slice(next + 1, close);
    attributes.set(name, { value, nameOffset: offset, valueOffset: next + 1 });
    return close + 1;
  }

  private startTag(tag: Tag): void {
    this.checkPlace(tag);
    this.checkAttributeNames(tag);
    const at = tag.at;
    if (tag.name === 'superblock') {
      this.sawSuperblock = true;
      this.out.push({ kind: 'superblock', info: this.superblockInfo(tag), at });
    } else if (tag.name === 'device') {
      this.out.push({ kind: 'device', info: this.deviceInfo(tag), at });
    } else {
      this.out.push({ kind: 'run', run: this.mappingRun(tag), at });
    }
    if (!tag.selfClosing) this.open.push({ name: tag.name, at });
    else if (tag.name === 'device') this.out.push({ kind: 'endDevice', at });
    else if (tag.name === 'superblock') this.out.push({ kind: 'end', at });
  }

  /** Fails unless the element may appear inside the innermost open one. */
  private checkPlace(tag: Tag): void {
    const top = this.open.at(-1);
    const name = tag.name;
    if (name === 'superblock') {
      if (this.sawSuperblock) {
        this.fail(tag.start, 'a second <superblock>', 'a dump holds one pool: split the file');
      }
      return;
    }
    const parent = name === 'device' ? 'superblock' : 'device';
    if (top === undefined || (parent === 'device' && top.name === 'superblock')) {
      this.fail(tag.start, `<${name}> outside a <${parent}>`, `move it into a <${parent}>`);
    }
    if (top.name !== parent) {
      this.fail(
        tag.start,
        `<${name}> inside <${top.name}> opened at ${describe(top.at)}`,
        `close <${top.name}> with </${top.name}> first`,
      );
    }
  }

  private checkAttributeNames(tag: Tag): void {
    const spec = ELEMENTS[tag.name];
    for (const [name, attribute] of tag.attributes) {
      if (KNOWN.get(tag.name)?.has(name)) continue;
      const known = [...spec.required, ...spec.optional];
      const guess = closestMatch(name, known);
      this.fail(
        attribute.nameOffset,
        `<${tag.name}> has no attribute ${name}`,
        guess === undefined ? `its attributes are ${known.join(', ')}` : `did you mean ${guess}?`,
      );
    }
    for (const name of spec.required) {
      if (!tag.attributes.has(name)) {
        this.fail(tag.start, `<${tag.name}> is missing the attribute ${name}`, `add ${name}="N"`);
      }
    }
  }

  private superblockInfo(tag: Tag): SuperblockInfo {
    const info: SuperblockInfo = {
      uuid: this.text(tag, 'uuid'),
      time: this.number(tag, 'time'),
      transaction: this.number(tag, 'transaction'),
      flags: this.number(tag, 'flags', 0),
      version: this.number(tag, 'version', 1),
      dataBlockSize: this.number(tag, 'data_block_size'),
      nrDataBlocks: this.number(tag, 'nr_data_blocks'),
    };
    if (tag.attributes.has('metadata_snap')) {
      info.metadataSnap = this.number(tag, 'metadata_snap');
    }
    return info;
  }

  private deviceInfo(tag: Tag): DeviceInfo {
    return {
      devId: this.number(tag, 'dev_id'),
      mappedBlocks: this.number(tag, 'mapped_blocks', 0),
      transaction: this.number(tag, 'transaction'),
      creationTime: this.number(tag, 'creation_time'),
      snapTime: this.number(tag, 'snap_time'),
    };
  }

  private mappingRun(tag: Tag): MappingRun {
    const single = tag.name === 'single_mapping';
    return {
      vblock: this.number(tag, single ? 'origin_block' : 'origin_begin'),
      dataBlock: this.number(tag, single ? 'data_block' : 'data_begin'),
      length: single ? 1 : this.number(tag, 'length'),
      time: this.number(tag, 'time'),
    };
  }

  /** A numeric attribute; `fallback` is used when it is absent (required ones never are). */
  private number(tag: Tag, name: string, fallback = 0): number {
    const attribute = tag.attributes.get(name);
    if (attribute === undefined) return fallback;
    const { value, valueOffset } = attribute;
    if (!DIGITS.test(value)) {
      this.fail(valueOffset, `${name}="${value}" is not an unsigned decimal number`);
    }
    const number = Number(value);
    if (!Number.isSafeInteger(number)) {
      this.fail(valueOffset, `${name}="${value}" is above 2^53 - 1`, HINT_SAFE);
    }
    return number;
  }

  /** A string attribute with its entity references decoded; "" when absent. */
  private text(tag: Tag, name: string): string {
    const attribute = tag.attributes.get(name);
    if (attribute === undefined) return '';
    const bad = attribute.value.search(BAD_AMPERSAND);
    if (bad >= 0) {
      this.fail(attribute.valueOffset + bad, `'&' in ${name} starts no known entity`, HINT_AMP);
    }
    return attribute.value.replace(ENTITY, decodeEntity);
  }

  /** Consumes whitespace; returns the new position. */
  private skipSpace(): number {
    const buf = this.buf;
    let i = this.pos;
    for (; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c === 0x0a) {
        this.line++;
        this.lineStart = this.base + i + 1;
      } else if (c !== 0x20 && c !== 0x09 && c !== 0x0d) {
        break;
      }
    }
    this.pos = i;
    return i;
  }

  /** Consumes the buffer up to `end`, counting its lines. */
  private advance(end: number): void {
    const { line, column } = this.where(end);
    this.line = line;
    this.lineStart = this.base + end - column + 1;
    this.pos = end;
  }

  /** The line and column of `offset`, which is at or after the consumed position. */
  private where(offset: number): XmlPosition {
    const buf = this.buf;
    let line = this.line;
    let lineStart = this.lineStart;
    for (let i = this.pos; i < offset; i++) {
      if (buf.charCodeAt(i) === 0x0a) {
        line++;
        lineStart = this.base + i + 1;
      }
    }
    return { line, column: this.base + offset - lineStart + 1 };
  }

  private fail(offset: number, reason: string, hint?: string): never {
    throw new DumpXmlError(reason, this.where(offset), hint);
  }
}

const HINT_START = 'a thin_dump file starts with <superblock ...>';
const HINT_CUT = 'the dump is cut short: dump the pool again';
const HINT_SAFE = 'thinp handles numbers up to 9007199254740991';
const HINT_AMP = "write '&' as &amp;";

function describe(at: XmlPosition): string {
  return `line ${at.line}, column ${at.column}`;
}

/** The first offset at or after `offset` that is not XML whitespace. */
function skipSpace(text: string, offset: number): number {
  let i = offset;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) break;
  }
  return i;
}

/** The text of one entity reference; a code point beyond Unicode becomes U+FFFD. */
function decodeEntity(_match: string, hex?: string, decimal?: string, named?: string): string {
  if (named !== undefined) return NAMED_ENTITIES[named] ?? '';
  const code = hex !== undefined ? Number.parseInt(hex, 16) : Number(decimal);
  return code <= 0x10ffff ? String.fromCodePoint(code) : '\uFFFD';
}
