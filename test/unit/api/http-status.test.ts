import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { errorBody, errorOf, toHttpStatus } from '../../../src/api/index.js';
import {
  BadInputError,
  BusyError,
  ConfigError,
  ExistsError,
  InternalError,
  IoError,
  NoSpaceError,
  NotFoundError,
  ReadOnlyError,
  UnavailableError,
  UsageError,
} from '../../../src/util/index.js';

describe('toHttpStatus', () => {
  const cases: Array<[unknown, number]> = [
    [new BadInputError('x'), 400],
    [new UsageError('x'), 400],
    [new ConfigError('x'), 400],
    [new NotFoundError('x'), 404],
    [new ExistsError('x'), 409],
    [new BusyError('x'), 409],
    [new ReadOnlyError('x'), 409],
    [new NoSpaceError('data', 'x'), 507],
    [new UnavailableError('x'), 503],
    [new IoError('dev', 'read', 'x'), 500],
    [new InternalError('x'), 500],
    [new Error('x'), 500],
    ['a string', 500],
  ];
  for (const [err, status] of cases) {
    it(`maps ${err instanceof Error ? err.constructor.name : typeof err} to ${status}`, () => {
      assert.equal(toHttpStatus(err), status);
    });
  }
});

describe('error bodies', () => {
  it('carry code, message and hint, and come back as the same class', () => {
    const body = errorBody(new NotFoundError('no device x', { hint: 'list them' }));
    assert.deepEqual(body, {
      error: { code: 'NOT_FOUND', message: 'no device x', hint: 'list them' },
    });
    const back = errorOf(404, JSON.stringify(body));
    assert.ok(back instanceof NotFoundError);
    assert.equal(back.message, 'no device x');
    assert.equal(back.hint, 'list them');
  });

  it('an unknown error is INTERNAL', () => {
    assert.equal(errorBody(new Error('boom')).error.code, 'INTERNAL');
    assert.ok(errorOf(500, 'not json') instanceof InternalError);
  });

  it('busy and exists survive the round trip', () => {
    assert.ok(errorOf(409, JSON.stringify(errorBody(new BusyError('b')))) instanceof BusyError);
    assert.ok(errorOf(409, JSON.stringify(errorBody(new ExistsError('e')))) instanceof ExistsError);
  });
});
