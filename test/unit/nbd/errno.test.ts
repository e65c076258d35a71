import assert from 'node:assert/strict';
import { test } from 'node:test';
import { toNbdErrno, wire } from '../../../src/nbd/index.js';
import {
  BadInputError,
  IoError,
  NoSpaceError,
  NotFoundError,
  ReadOnlyError,
  UnavailableError,
  UsageError,
} from '../../../src/util/index.js';

const { NBD_ERRNO: E } = wire;
const sysError = (code: string) => Object.assign(new Error(code), { code });

const CASES: Array<[string, unknown, number]> = [
  ['NoSpaceError', new NoSpaceError('data', 'full'), E.ENOSPC],
  ['ReadOnlyError', new ReadOnlyError('read-only'), E.EPERM],
  ['BadInputError', new BadInputError('bad'), E.EINVAL],
  ['a BadInputError subclass', new UsageError('bad'), E.EINVAL],
  ['UnavailableError', new UnavailableError('not fast'), E.ENOTSUP],
  ['RangeError', new RangeError('out of range'), E.EINVAL],
  ['IoError', new IoError('dev', 'write', 'failed'), E.EIO],
  [
    'IoError caused by ENOSPC',
    new IoError('dev', 'write', 'full', { cause: sysError('ENOSPC') }),
    E.ENOSPC,
  ],
  ['another ThinpError', new NotFoundError('gone'), E.EIO],
  ['EDQUOT', sysError('EDQUOT'), E.ENOSPC],
  ['EFBIG', sysError('EFBIG'), E.ENOSPC],
  ['EROFS', sysError('EROFS'), E.EPERM],
  ['EINVAL', sysError('EINVAL'), E.EINVAL],
  ['an unknown code', sysError('EWHATEVER'), E.EIO],
  ['a plain Error', new Error('boom'), E.EIO],
  ['a string', 'boom', E.EIO],
  ['null', null, E.EIO],
];

for (const [what, err, errno] of CASES) {
  test(`toNbdErrno maps ${what} to ${wire.nameOfErrno(errno)}`, () => {
    assert.equal(toNbdErrno(err), errno);
  });
}
