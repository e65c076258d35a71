/**
 * What an export advertises: its transmission flags and block size constraints, derived
 * from the `Export` and what the client negotiated. NBD_INFO_EXPORT, NBD_OPT_EXPORT_NAME and
 * request validation all use these, so what is advertised is exactly what is enforced.
 */

import type { Export } from './export.js';
import { type BlockSizes, TRANSMISSION_FLAG as F } from './wire.js';

/** The transmission flags for `e`; DF only once structured replies are negotiated. */
export function transmissionFlags(e: Export, structuredReplies: boolean): number {
  const writable = !e.readOnly;
  let flags = F.hasFlags;
  if (e.readOnly) flags |= F.readOnly;
  if (e.canFlush) flags |= F.sendFlush;
  if (e.canFlush && writable) flags |= F.sendFua;
  if (e.canTrim && writable) flags |= F.sendTrim;
  if (e.canWriteZeroes && writable) flags |= F.sendWriteZeroes;
  if (e.canWriteZeroes && writable && e.canFastZero === true) flags |= F.sendFastZero;
  if (structuredReplies) flags |= F.sendDf;
  if (e.canMultiConn) flags |= F.canMultiConn;
  if (e.canCache === true) flags |= F.sendCache;
  return flags;
}

/**
 * The largest payload of one NBD_CMD_WRITE request or NBD_CMD_READ reply the server accepts,
 * whatever the export allows: 2^25 bytes, the size the spec says no one may call an attack.
 */
export const MAX_PAYLOAD = 32 * 1024 * 1024;

/** The constraints NBD_INFO_BLOCK_SIZE advertises (and validation enforces). */
export function blockSizes(e: Export): BlockSizes {
  return {
    minimum: e.minBlockSize,
    preferred: e.preferredBlockSize,
    maximum: Math.min(e.maxBlockSize, MAX_PAYLOAD),
  };
}

/**
 * The preferred block size an export over blocks of `blockSize` bytes advertises: the
 * largest power of two that divides it, from `min` up to at most `max` (a client sending
 * this size, aligned, never splits a block).
 */
export function preferredBlockSizeFor(blockSize: number, min: number, max: number): number {
  let p = min;
  while (p * 2 <= max && blockSize % (p * 2) === 0) p *= 2;
  return p;
}
