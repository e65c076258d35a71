/**
 * containerd's filter syntax, as `ctr snapshots ls` and the snapshot service's List take it:
 *
 *     filter   := selector ("," selector)*          every selector must match (AND)
 *     selector := fieldpath [op value]               a bare fieldpath tests presence
 *     fieldpath:= field ("." field)*                 e.g. labels."containerd.io/gc.root"
 *     op       := "==" | "!=" | "~="                 equal, not equal, regular expression
 *     value    := quoted | /regexp/ | bare           bare: up to the next ","
 *
 * Several filter strings are OR-ed. A field is a word of letters, digits and `_`, or a
 * double-quoted string with Go escapes. Malformed filters are a `FilterSyntaxError` that
 * points at the column.
 */

import { BadInputError } from '../../util/index.js';

export class FilterSyntaxError extends BadInputError {}

export type Operator = '==' | '!=' | '~=';

export interface Selector {
  fieldpath: string[];
  operator: Operator | undefined;
  value: string;
  /** Compiled for `~=`. */
  regexp: RegExp | undefined;
}

/** One filter string: a conjunction of selectors. */
export type Filter = Selector[];

/** Looks a field path up on the object being filtered; undefined when absent. */
export type FieldLookup = (fieldpath: readonly string[]) => string | undefined;

/** Parses every filter string; an empty list matches everything. */
export function parseFilters(texts: readonly string[]): Filter[] {
  return texts.filter((t) => t.trim() !== '').map(parseFilter);
}

/** True when any filter matches (OR), each filter needing all its selectors (AND). */
export function matchesAny(filters: readonly Filter[], lookup: FieldLookup): boolean {
  if (filters.length === 0) return true;
  return filters.some((f) => f.every((s) => matchesSelector(s, lookup)));
}

function matchesSelector(s: Selector, lookup: FieldLookup): boolean {
  const value = lookup(s.fieldpath);
  switch (s.operator) {
    case undefined:
      return value !== undefined;
    case '==':
      return value === s.value;
    case '!=':
      return value !== s.value;
    case '~=':
      return value !== undefined && (s.regexp as RegExp).test(value);
  }
}

export function parseFilter(text: string): Filter {
  const scanner = new Scanner(text);
  const selectors: Selector[] = [];
  for (;;) {
    selectors.push(parseSelector(scanner));
    scanner.skipSpaces();
    if (scanner.done()) return selectors;
    scanner.expect(',');
  }
}

function parseSelector(s: Scanner): Selector {
  const fieldpath = [parseField(s)];
  for (;;) {
    s.skipSpaces();
    if (s.peek() !== '.') break;
    s.next();
    fieldpath.push(parseField(s));
  }
  s.skipSpaces();
  const operator = s.operator();
  if (operator === undefined) return { fieldpath, operator, value: '', regexp: undefined };
  s.skipSpaces();
  const value = parseValue(s, operator);
  let regexp: RegExp | undefined;
  if (operator === '~=') {
    try {
      regexp = new RegExp(value);
    } catch (err) {
      throw s.error(`the regular expression ${JSON.stringify(value)} is invalid`, err);
    }
  }
  return { fieldpath, operator, value, regexp };
}

function parseField(s: Scanner): string {
  s.skipSpaces();
  if (s.peek() === '"') return s.quoted('"');
  const word = s.take(/[A-Za-z0-9_]/);
  if (word === '') throw s.error('a field name is expected');
  return word;
}

function parseValue(s: Scanner, operator: Operator): string {
  const c = s.peek();
  if (c === '"') return s.quoted('"');
  if (c === '/' && operator === '~=') return s.quoted('/');
  const bare = s.take(/[^,]/).trimEnd();
  if (bare === '') throw s.error('a value is expected');
  return bare;
}

class Scanner {
  private at = 0;

  constructor(private readonly text: string) {}

  done(): boolean {
    return this.at >= this.text.length;
  }

  peek(): string | undefined {
    return this.text[this.at];
  }

  next(): string | undefined {
    return this.text[this.at++];
  }

  skipSpaces(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.at++;
  }

  expect(c: string): void {
    if (this.next() !== c) throw this.error(`"${c}" is expected`, undefined, this.at - 1);
  }

  take(allowed: RegExp): string {
    const start = this.at;
    while (!this.done() && allowed.test(this.text[this.at] as string)) this.at++;
    return this.text.slice(start, this.at);
  }

  operator(): Operator | undefined {
    const two = this.text.slice(this.at, this.at + 2);
    if (two === '==' || two === '!=' || two === '~=') {
      this.at += 2;
      return two;
    }
    return undefined;
  }

  /** A string between `quote`s; inside double quotes, Go's escapes. */
  quoted(quote: '"' | '/'): string {
    const start = this.at;
    this.at++;
    let out = '';
    for (;;) {
      const c = this.next();
      if (c === undefined)
        throw this.error(`the quote opened at column ${start + 1} is not closed`);
      if (c === quote) return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = this.next();
      if (quote === '/') out += e === '/' ? '/' : `\\${e ?? ''}`;
      else out += goEscape(e, this);
    }
  }

  error(problem: string, cause?: unknown, at = this.at): FilterSyntaxError {
    return new FilterSyntaxError(
      `filter ${JSON.stringify(this.text)}: ${problem} at column ${at + 1}`,
      {
        hint: 'write filters as field==value[,field!=value...], e.g. labels."containerd.io/gc.root"',
        cause,
      },
    );
  }
}

const ESCAPES: Record<string, string> = {
  n: '\n',
  t: '\t',
  r: '\r',
  '"': '"',
  '\\': '\\',
  "'": "'",
};

function goEscape(e: string | undefined, s: Scanner): string {
  if (e !== undefined && e in ESCAPES) return ESCAPES[e] as string;
  throw s.error(`the escape \\${e ?? ''} is not known`);
}
