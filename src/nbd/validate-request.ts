/**
 * `validateRequest()`: every guard a transmission request must pass before the export sees
 * it. Each guard names the error the reply carries and why, so the connection can log the
 * command and the reason. Nothing here touches the export.
 *
 * Errors follow the spec's SHOULDs: EINVAL for unknown commands, flags not valid for the
 * command or not negotiated, lengths of 0, payloads over the maximum, unaligned requests, and
 * reads, trims, caches or status queries past the end; ENOSPC for writes past the end; EPERM
 * for any change to a read-only export.
 *
 * The maximum block size bounds payloads only: the data of a WRITE request and of a READ
 * reply. WRITE_ZEROES, TRIM, CACHE and BLOCK_STATUS carry none, and clients (nbdcopy zeroes
 * 128 MiB at once; the kernel trims whole ranges) send them as large as the export; they are
 * never refused for their length alone.
 */

import { blockSizes } from './flags.js';
import type { Negotiated } from './handshake.js';
import {
  CMD,
  CMD_FLAG,
  TRANSMISSION_FLAG as F,
  NBD_ERRNO,
  type NbdErrno,
  type Request,
} from './wire.js';

export interface Rejection {
  errno: NbdErrno;
  reason: string;
}

const reject = (errno: NbdErrno, reason: string): Rejection => ({ errno, reason });

/** Commands that change the export. */
const MUTATING: ReadonlySet<number> = new Set([CMD.WRITE, CMD.TRIM, CMD.WRITE_ZEROES]);

/** Commands with a payload (request or reply), which the maximum block size bounds. */
const PAYLOAD_BOUND: ReadonlySet<number> = new Set([CMD.READ, CMD.WRITE]);

/** The command flags each command may carry once negotiated (FUA is checked separately). */
const FLAGS_FOR: Readonly<Record<number, number>> = {
  [CMD.READ]: CMD_FLAG.DF,
  [CMD.WRITE_ZEROES]: CMD_FLAG.NO_HOLE | CMD_FLAG.FAST_ZERO,
  [CMD.BLOCK_STATUS]: CMD_FLAG.REQ_ONE,
};

/** The transmission flag that a command flag requires. */
const FLAG_NEEDS: ReadonlyArray<readonly [number, number]> = [
  [CMD_FLAG.FUA, F.sendFua],
  [CMD_FLAG.DF, F.sendDf],
  [CMD_FLAG.FAST_ZERO, F.sendFastZero],
];

/** The rejection for `req` on the negotiated export, or undefined if it may go ahead. */
export function validateRequest(req: Request, n: Negotiated): Rejection | undefined {
  return checkCommand(req, n) ?? checkFlags(req, n) ?? checkRange(req, n);
}

function checkCommand(req: Request, n: Negotiated): Rejection | undefined {
  const e = n.export;
  switch (req.type) {
    case CMD.READ:
    case CMD.WRITE:
    case CMD.CACHE:
      break;
    case CMD.FLUSH:
      if (!e.canFlush) return reject(NBD_ERRNO.EINVAL, 'the export does not support flush');
      if (req.offset !== 0 || req.length !== 0) {
        return reject(NBD_ERRNO.EINVAL, 'flush must have offset and length 0');
      }
      break;
    case CMD.TRIM:
      if (!e.canTrim) return reject(NBD_ERRNO.EINVAL, 'the export does not support trim');
      break;
    case CMD.WRITE_ZEROES:
      if (!e.canWriteZeroes)
        return reject(NBD_ERRNO.EINVAL, 'the export does not support write zeroes');
      break;
    case CMD.BLOCK_STATUS:
      if (n.allocationContext === undefined) {
        return reject(NBD_ERRNO.EINVAL, 'no metadata context was selected for this export');
      }
      break;
    default:
      return reject(NBD_ERRNO.EINVAL, 'unknown command');
  }
  if (e.readOnly && MUTATING.has(req.type))
    return reject(NBD_ERRNO.EPERM, 'the export is read-only');
  return undefined;
}

function checkFlags(req: Request, n: Negotiated): Rejection | undefined {
  const allowed = CMD_FLAG.FUA | (FLAGS_FOR[req.type] ?? 0);
  const stray = req.flags & ~allowed;
  if (stray !== 0)
    return reject(NBD_ERRNO.EINVAL, `flags 0x${stray.toString(16)} are not valid here`);
  for (const [flag, needs] of FLAG_NEEDS) {
    if ((req.flags & flag) !== 0 && (n.flags & needs) === 0) {
      return reject(NBD_ERRNO.EINVAL, `flag 0x${flag.toString(16)} was not negotiated`);
    }
  }
  return undefined;
}

function checkRange(req: Request, n: Negotiated): Rejection | undefined {
  if (req.type === CMD.FLUSH) return undefined;
  const sizes = blockSizes(n.export);
  if (req.length === 0) return reject(NBD_ERRNO.EINVAL, 'length is 0');
  if (req.offset + req.length > n.export.size) {
    const errno =
      req.type === CMD.WRITE || req.type === CMD.WRITE_ZEROES ? NBD_ERRNO.ENOSPC : NBD_ERRNO.EINVAL;
    return reject(errno, `${req.length} bytes at ${req.offset} go past the end (${n.export.size})`);
  }
  if (req.offset % sizes.minimum !== 0 || req.length % sizes.minimum !== 0) {
    return reject(NBD_ERRNO.EINVAL, `not aligned to the minimum block size ${sizes.minimum}`);
  }
  if (req.length > sizes.maximum && PAYLOAD_BOUND.has(req.type)) {
    return reject(
      NBD_ERRNO.EINVAL,
      `a payload of ${req.length} bytes is over the maximum ${sizes.maximum}`,
    );
  }
  return undefined;
}
