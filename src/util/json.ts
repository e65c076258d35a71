/**
 * A strict JSON (RFC 8259) parser that keeps the line and column of every value, so that
 * a configuration error can point at the very place in the file. V8's own JSON.parse no
 * longer reports positions. Duplicate keys in an object are rejected: in a configuration
 * file they are always a mistake.
 */

import { BadInputError } from './errors.js';

export interface JsonPosition {
  /** 1-based line. */
  line: number;
  /** 1-based column, counted in UTF-16 code units. */
  column: number;
}

export interface JsonMember {
  key: string;
  keyAt: JsonPosition;
  value: JsonNode;
}

export type JsonNode = { at: JsonPosition } & (
  | { type: 'object'; members: JsonMember[] }
  | { type: 'array'; items: JsonNode[] }
  | { type: 'string'; value: string }
  | { type: 'number'; value: number }
  | { type: 'boolean'; value: boolean }
  | { type: 'null' }
);

/** Malformed JSON; `at` is where the parser stopped. */
export class JsonSyntaxError extends BadInputError {
  override readonly code = 'JSON_SYNTAX';
  readonly at: JsonPosition;
  readonly reason: string;

  constructor(reason: string, at: JsonPosition) {
    super(`${at.line}:${at.column}: ${reason}`, { hint: 'correct the JSON at that place' });
    this.at = at;
    this.reason = reason;
  }
}

export function parseJson(text: string): JsonNode {
  const parser = new Parser(text.startsWith('\uFEFF') ? text.slice(1) : text);
  const node = parser.value();
  parser.end();
  return node;
}

/** A short name for a node's type, for messages: "expected an array, found a string". */
export function jsonTypeName(node: JsonNode): string {
  if (node.type === 'null') return 'null';
  return node.type === 'array' || node.type === 'object' ? `an ${node.type}` : `a ${node.type}`;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

class Parser {
  private pos = 0;
  /** Line of `pos` and the offset where that line starts; only whitespace holds newlines. */
  private line = 1;
  private lineStart = 0;

  constructor(private readonly text: string) {}

  value(): JsonNode {
    this.skipSpace();
    const at = this.position();
    const ch = this.text[this.pos];
    if (ch === '{') return this.object(at);
    if (ch === '[') return this.array(at);
    if (ch === '"') return { type: 'string', value: this.string(), at };
    if (ch === '-' || (ch !== undefined && ch >= '0' && ch <= '9')) return this.number(at);
    if (this.literal('true')) return { type: 'boolean', value: true, at };
    if (this.literal('false')) return { type: 'boolean', value: false, at };
    if (this.literal('null')) return { type: 'null', at };
    throw this.unexpected('a value');
  }

  end(): void {
    this.skipSpace();
    if (this.pos < this.text.length) {
      throw this.unexpected('the end of the file');
    }
  }

  private object(at: JsonPosition): JsonNode {
    this.pos++;
    const members: JsonMember[] = [];
    if (this.peekAfterSpace() === '}') {
      this.pos++;
      return { type: 'object', members, at };
    }
    for (;;) {
      this.skipSpace();
      const keyAt = this.position();
      if (this.text[this.pos] !== '"') throw this.unexpected('a property name in double quotes');
      const key = this.string();
      if (members.some((member) => member.key === key)) {
        throw new JsonSyntaxError(`duplicate property "${key}"`, keyAt);
      }
      this.expect(':', "':' after the property name");
      members.push({ key, keyAt, value: this.value() });
      if (this.endOfList('}', 'property')) return { type: 'object', members, at };
    }
  }

  private array(at: JsonPosition): JsonNode {
    this.pos++;
    const items: JsonNode[] = [];
    if (this.peekAfterSpace() === ']') {
      this.pos++;
      return { type: 'array', items, at };
    }
    for (;;) {
      items.push(this.value());
      if (this.endOfList(']', 'item')) return { type: 'array', items, at };
    }
  }

  /** After a member or item: true at the closing bracket, false after a comma. */
  private endOfList(close: '}' | ']', what: string): boolean {
    const ch = this.peekAfterSpace();
    this.pos++;
    if (ch === close) return true;
    if (ch !== ',') {
      this.pos--;
      throw this.unexpected(`',' or '${close}' after the ${what}`);
    }
    if (this.peekAfterSpace() === close) {
      throw new JsonSyntaxError(`trailing comma before '${close}'`, this.position());
    }
    return false;
  }

  private string(): string {
    const start = this.pos;
    this.pos++;
    let out = '';
    for (;;) {
      const ch = this.text[this.pos];
      if (ch === undefined || ch === '\n') {
        throw new JsonSyntaxError('unterminated string', this.positionOf(start));
      }
      if (ch === '"') break;
      if (ch < ' ') throw new JsonSyntaxError('control character in a string', this.position());
      if (ch === '\\') {
        out += this.escape();
        continue;
      }
      out += ch;
      this.pos++;
    }
    this.pos++;
    return out;
  }

  private escape(): string {
    const at = this.position();
    const ch = this.text[this.pos + 1];
    if (ch === 'u') {
      const hex = this.text.slice(this.pos + 2, this.pos + 6);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new JsonSyntaxError('bad \\u escape', at);
      this.pos += 6;
      return String.fromCharCode(Number.parseInt(hex, 16));
    }
    const replacement = ch === undefined ? undefined : ESCAPES[ch];
    if (replacement === undefined) throw new JsonSyntaxError('bad escape in a string', at);
    this.pos += 2;
    return replacement;
  }

  private number(at: JsonPosition): JsonNode {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (match === null) throw this.unexpected('a number');
    this.pos += match[0].length;
    return { type: 'number', value: Number(match[0]), at };
  }

  private literal(word: string): boolean {
    const found = this.text.startsWith(word, this.pos);
    if (found) this.pos += word.length;
    return found;
  }

  private expect(ch: string, what: string): void {
    if (this.peekAfterSpace() !== ch) throw this.unexpected(what);
    this.pos++;
  }

  private peekAfterSpace(): string | undefined {
    this.skipSpace();
    return this.text[this.pos];
  }

  private skipSpace(): void {
    for (;;) {
      const ch = this.text[this.pos];
      if (ch === '\n') {
        this.line++;
        this.lineStart = this.pos + 1;
      } else if (ch !== ' ' && ch !== '\t' && ch !== '\r') {
        return;
      }
      this.pos++;
    }
  }

  private unexpected(expected: string): JsonSyntaxError {
    const ch = this.text[this.pos];
    const found = ch === undefined ? 'the end of the file' : `'${ch}'`;
    return new JsonSyntaxError(`expected ${expected}, found ${found}`, this.position());
  }

  private position(): JsonPosition {
    return this.positionOf(this.pos);
  }

  /** The position of `offset`, which lies on the current line. */
  private positionOf(offset: number): JsonPosition {
    return { line: this.line, column: offset - this.lineStart + 1 };
  }
}
