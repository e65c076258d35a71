import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type JsonNode, JsonSyntaxError, parseJson } from '../../../src/util/index.js';

/** The node as a plain value, to compare with JSON.parse. */
function plain(node: JsonNode): unknown {
  switch (node.type) {
    case 'object':
      return Object.fromEntries(node.members.map((m) => [m.key, plain(m.value)]));
    case 'array':
      return node.items.map(plain);
    case 'null':
      return null;
    default:
      return node.value;
  }
}

function syntaxError(text: string): JsonSyntaxError {
  try {
    parseJson(text);
  } catch (error) {
    if (error instanceof JsonSyntaxError) return error;
    throw error;
  }
  assert.fail(`parsed without error: ${text}`);
}

describe('parseJson', () => {
  test('reads every kind of value', () => {
    const text = '{"a": [1, -2.5e3, "x\\n\\u00e9\\"", true, false, null], "b": {}, "c": []}';
    assert.deepEqual(plain(parseJson(text)), JSON.parse(text));
  });

  test('keeps the line and column of each value and key', () => {
    const node = parseJson('{\n  "storage-opts": [\n    "dm.basesize=20G",\n\t"x"\n  ]\n}');
    assert.equal(node.type, 'object');
    if (node.type !== 'object') return;
    const [member] = node.members;
    assert.deepEqual(member?.keyAt, { line: 2, column: 3 });
    assert.equal(member?.value.type, 'array');
    if (member?.value.type !== 'array') return;
    assert.deepEqual(member.value.at, { line: 2, column: 19 });
    assert.deepEqual(
      member.value.items.map((item) => item.at),
      [
        { line: 3, column: 5 },
        { line: 4, column: 2 },
      ],
    );
  });

  test('skips a byte order mark', () => {
    assert.deepEqual(plain(parseJson('\uFEFF{"a": 1}')), { a: 1 });
  });

  const errors: [string, string, number, number][] = [
    ['{"a": 1,}', "trailing comma before '}'", 1, 9],
    ['[1, 2,\n]', "trailing comma before ']'", 2, 1],
    ['{"a" 1}', "expected ':' after the property name, found '1'", 1, 6],
    ['{"a": 1 "b": 2}', "expected ',' or '}' after the property, found '\"'", 1, 9],
    ['[1 2]', "expected ',' or ']' after the item, found '2'", 1, 4],
    ["{'a': 1}", "expected a property name in double quotes, found '''", 1, 2],
    ['{"a": }', "expected a value, found '}'", 1, 7],
    ['{"a": tru}', "expected a value, found 't'", 1, 7],
    ['', 'expected a value, found the end of the file', 1, 1],
    ['{"a": 1', "expected ',' or '}' after the property, found the end of the file", 1, 8],
    ['{"a": "b\n"}', 'unterminated string', 1, 7],
    ['"ab\tc"', 'control character in a string', 1, 4],
    ['"\\x"', 'bad escape in a string', 1, 2],
    ['"\\u12g4"', 'bad \\u escape', 1, 2],
    ['{"a": 1} x', "expected the end of the file, found 'x'", 1, 10],
    ['{"a": 1, "a": 2}', 'duplicate property "a"', 1, 10],
    ['[01]', "expected ',' or ']' after the item, found '1'", 1, 3],
    ['[-]', "expected a number, found '-'", 1, 2],
  ];
  for (const [text, reason, line, column] of errors) {
    test(`reports ${JSON.stringify(text)} as "${reason}" at ${line}:${column}`, () => {
      const error = syntaxError(text);
      assert.equal(error.reason, reason);
      assert.deepEqual(error.at, { line, column });
      assert.match(error.message, new RegExp(`^${line}:${column}: `));
    });
  }

  test('agrees with JSON.parse on any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = JSON.stringify(value, null, 1);
        assert.deepEqual(plain(parseJson(text)), JSON.parse(text));
      }),
    );
  });

  test('rejects what JSON.parse rejects, and accepts what it accepts (no duplicate keys)', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'{}[]:,"\\ 01-e.tnaul\n') }), (text) => {
        let expected: unknown;
        try {
          expected = JSON.parse(text);
        } catch {
          assert.throws(() => parseJson(text), JsonSyntaxError);
          return;
        }
        try {
          assert.deepEqual(plain(parseJson(text)), expected);
        } catch (error) {
          assert.ok(error instanceof JsonSyntaxError && /duplicate property/.test(error.reason));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
