/**
 * The one place where failures become NBD error numbers (nbdkit's `nbd_errno`). Replies carry
 * only this lossy code; the connection logs the full error next to it.
 */

import {
  BadInputError,
  NoSpaceError,
  ReadOnlyError,
  ThinpError,
  UnavailableError,
} from '../util/index.js';
import { NBD_ERRNO, type NbdErrno } from './wire.js';

/** Host errno names (Node's `err.code`) and the NBD error each one becomes. */
const SYSTEM_CODES: Readonly<Record<string, NbdErrno>> = {
  ENOSPC: NBD_ERRNO.ENOSPC,
  EDQUOT: NBD_ERRNO.ENOSPC,
  EFBIG: NBD_ERRNO.ENOSPC,
  EROFS: NBD_ERRNO.EPERM,
  EPERM: NBD_ERRNO.EPERM,
  EACCES: NBD_ERRNO.EPERM,
  EINVAL: NBD_ERRNO.EINVAL,
  ERANGE: NBD_ERRNO.EINVAL,
  ENOTSUP: NBD_ERRNO.ENOTSUP,
  EOPNOTSUPP: NBD_ERRNO.ENOTSUP,
  ESHUTDOWN: NBD_ERRNO.ESHUTDOWN,
};

/**
 * The NBD error for `err`: ENOSPC when the pool is out of space, EPERM for a read-only
 * device, EINVAL for bad input, ENOTSUP when an optional fast path is unavailable (a fast
 * zero that would not be fast), the matching code for a host errno, and EIO for anything else.
 * Never returns 0.
 */
export function toNbdErrno(err: unknown, depth = 0): NbdErrno {
  if (err instanceof NoSpaceError) return NBD_ERRNO.ENOSPC;
  if (err instanceof ReadOnlyError) return NBD_ERRNO.EPERM;
  if (err instanceof BadInputError) return NBD_ERRNO.EINVAL;
  if (err instanceof UnavailableError) return NBD_ERRNO.ENOTSUP;
  if (err instanceof RangeError) return NBD_ERRNO.EINVAL;
  if (err instanceof ThinpError) {
    // An IoError says which device failed; its cause says how (ENOSPC, EROFS, …).
    return err.cause === undefined || depth > 8 ? NBD_ERRNO.EIO : toNbdErrno(err.cause, depth + 1);
  }
  const code = (err as { code?: unknown } | null)?.code;
  return (typeof code === 'string' ? SYSTEM_CODES[code] : undefined) ?? NBD_ERRNO.EIO;
}
