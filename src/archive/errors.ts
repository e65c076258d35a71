/**
 * The archive layer's errors, and their form on the wire between the worker and its parent.
 * A layer tar that would touch anything outside its root is an `UnsafeEntryError` naming the
 * entry; a tar that is malformed (truncated, unknown entry type, compressed with something
 * other than gzip) is a `BadArchiveError`. Errors cross the process boundary as JSON and are
 * rebuilt as the same class with the same message, hint and fields.
 */

import {
  BadInputError,
  type ErrorDetails,
  InternalError,
  IoError,
  NotFoundError,
  type ThinpError,
  UnavailableError,
} from '../util/index.js';

const REFUSED = 'the layer was refused as a whole; apply only tars from a source you trust';

/** A tar entry that would reach outside the root (`../`, absolute, through a symlink...). */
export class UnsafeEntryError extends BadInputError {
  override readonly code = 'UNSAFE_ENTRY';
  /** The entry's name as written in the tar. */
  readonly entry: string;
  /** Why it is refused, e.g. "climbs out of the root with '..'". */
  readonly reason: string;

  constructor(entry: string, reason: string, details: ErrorDetails = {}) {
    super(`unsafe layer entry '${entry}': ${reason}`, { hint: REFUSED, ...details });
    this.entry = entry;
    this.reason = reason;
  }
}

/** A tar stream that is not a valid layer: truncated, damaged, unknown entry type. */
export class BadArchiveError extends BadInputError {
  override readonly code = 'BAD_ARCHIVE';
  /** The entry where the problem was found, when there is one. */
  readonly entry: string | undefined;

  constructor(message: string, details: ErrorDetails & { entry?: string } = {}) {
    const where = details.entry === undefined ? '' : `layer entry '${details.entry}': `;
    super(`${where}${message}`, {
      hint: 'check that the file is an uncompressed or gzip-compressed tar and is complete',
      ...details,
    });
    this.entry = details.entry;
  }
}

/** The JSON form of an error, as the worker reports it. */
export interface WireError {
  kind: 'unsafe' | 'bad-archive' | 'not-found' | 'io' | 'unavailable' | 'internal';
  message: string;
  hint?: string;
  entry?: string;
  reason?: string;
  device?: string;
  op?: string;
}

/**
 * `err` as JSON: the archive's own classes keep their fields; a failed system call (ENOSPC,
 * EIO, EACCES...) becomes an IoError on `root`; anything else is internal.
 */
export function encodeError(err: unknown, root: string): WireError {
  const hint = (err as Partial<ThinpError>).hint;
  const base = { message: err instanceof Error ? err.message : String(err), hint };
  if (err instanceof UnsafeEntryError) {
    return { ...base, kind: 'unsafe', entry: err.entry, reason: err.reason };
  }
  if (err instanceof BadArchiveError) return { ...base, kind: 'bad-archive', entry: err.entry };
  if (err instanceof NotFoundError) return { ...base, kind: 'not-found' };
  if (err instanceof UnavailableError) return { ...base, kind: 'unavailable' };
  if (err instanceof IoError) {
    const prefix = `${err.device}: ${err.op} failed: `;
    const detail = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    return { ...base, message: detail, kind: 'io', device: err.device, op: err.op };
  }
  const errno = err as NodeJS.ErrnoException;
  if (typeof errno.code === 'string' && typeof errno.syscall === 'string') {
    const hint = 'check the space and the health of the filesystem that holds it';
    return { kind: 'io', message: errno.message, hint, device: root, op: errno.syscall };
  }
  const stack = err instanceof Error && err.stack !== undefined ? ` (${err.stack})` : '';
  return { ...base, message: `${base.message}${stack}`, kind: 'internal' };
}

/** The error that `wire` describes, as the same class it was in the worker. */
export function decodeError(wire: WireError): Error {
  const details = wire.hint === undefined ? {} : { hint: wire.hint };
  switch (wire.kind) {
    case 'unsafe':
      return new UnsafeEntryError(wire.entry ?? '', wire.reason ?? wire.message, details);
    case 'bad-archive': {
      const prefix = wire.entry === undefined ? '' : `layer entry '${wire.entry}': `;
      const message = wire.message.slice(prefix.length);
      return new BadArchiveError(message, { ...details, entry: wire.entry });
    }
    case 'not-found':
      return new NotFoundError(wire.message, details);
    case 'unavailable':
      return new UnavailableError(wire.message, details);
    case 'io':
      return new IoError(wire.device ?? '', wire.op ?? '', wire.message, details);
    default:
      return new InternalError(`archive worker: ${wire.message}`, details);
  }
}
