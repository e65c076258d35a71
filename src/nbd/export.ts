/**
 * What the NBD server serves: an `Export` is a byte range with a handful of verbs, in the
 * manner of nbdkit's plugin ops. The server never looks behind it; `daemon/` adapts a thin
 * device to it, tests use a sparse in-memory one.
 *
 * What the server guarantees an export:
 * - every call it makes is within `[0, size)`, with `length > 0`, offsets and lengths that are
 *   multiples of `minBlockSize`, and (for read, write, cache and non-fast write-zeroes) a
 *   length of at most `maxBlockSize`;
 * - it never calls a mutating verb on a `readOnly` export, nor a verb whose `can*` flag is
 *   false (a missing `cache` just succeeds);
 * - it may make many calls at once, from one connection or several, in any order. Writes to
 *   overlapping ranges may be in flight together: serializing them is the export's job.
 *
 * What an export must guarantee the server:
 * - `flush()` resolves only once every write that resolved before the flush was called is
 *   durable; a write with `fua` resolves only once it is durable itself;
 * - `canMultiConn` is true only if a flush on one connection covers writes made through all
 *   connections (the cache, if any, is shared);
 * - failures are thrown as `ThinpError`s (`NoSpaceError`, `ReadOnlyError`, `BadInputError`,
 *   `UnavailableError` for a fast zero that would not be fast, `IoError`…); the server maps
 *   them with `toNbdErrno()`;
 * - `blockStatus(offset, length)` returns consecutive extents starting at `offset`, each of
 *   nonzero length and a multiple of `minBlockSize` (except at the export's end), covering at
 *   least one byte; the server merges equal neighbours and clips the list to the request.
 */

import type { ReadPlan } from '../util/index.js';
export interface Export {
  /** The export name a client asks for; "" is the default export. */
  readonly name: string;
  /** Shown by `nbdinfo --list` and NBD_INFO_DESCRIPTION. */
  readonly description?: string;
  /** Size in bytes, a multiple of `minBlockSize`. */
  readonly size: number;
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  readonly canTrim: boolean;
  readonly canWriteZeroes: boolean;
  /** Whether `writeZeroes` honours `fastZero` (failing with `UnavailableError` if not fast). */
  readonly canFastZero?: boolean;
  readonly canCache?: boolean;
  readonly canMultiConn: boolean;
  /** A power of two, 1 to 65536: the alignment every request must have. */
  readonly minBlockSize: number;
  /** A power of two ≥ max(minBlockSize, 512): the size that avoids read-modify-write. */
  readonly preferredBlockSize: number;
  /** The largest read or write, a multiple of `minBlockSize`. */
  readonly maxBlockSize: number;

  /** Fills all of `buf` from `offset`. */
  read(buf: Buffer, offset: number): Promise<void>;
  /**
   * `read`, done at once when that needs no waiting: true when `buf` is filled, false when
   * it cannot be done so (then `read` it). Never throws for a request that passed
   * validation; it may return false for any reason, a failure included (`read` reports it).
   */
  readNow?(buf: Buffer, offset: number): boolean;
  /**
   * Where the bytes of a read are, at once when that needs no waiting (see ReadPlan): true
   * when `plan` is filled (the caller reads the pieces and then calls `plan.release()`),
   * false when it cannot be planned (then `read` it). Never throws for a request that passed
   * validation.
   */
  planRead?(offset: number, length: number, plan: ReadPlan): boolean;
  /**
   * Writes all of `buf` at `offset`; durable before resolving when `fua`. `buf` is lent
   * until the promise settles (the connection reuses it afterwards): keep a copy, not it.
   */
  write(buf: Buffer, offset: number, options: { fua: boolean }): Promise<void>;
  /**
   * `write` done at once, with no promise, when the export can (no waiting of any kind):
   * true when written, false when it must go through `write`. Never throws for a request
   * that passed validation; it may return false for any reason, a failure included
   * (`write` reports it).
   */
  writeNow?(buf: Buffer, offset: number, options: { fua: boolean }): boolean;
  /** Makes every write that resolved before this call durable. */
  flush(): Promise<void>;
  /** A hint that the range is no longer needed; it may read back as anything afterwards. */
  trim(offset: number, length: number, options: { fua: boolean }): Promise<void>;
  /**
   * Makes the range read back as zeroes. Without `noHole` it may deallocate; with `fastZero`
   * it must fail at once with `UnavailableError` unless zeroing is faster than writing.
   */
  writeZeroes(
    offset: number,
    length: number,
    options: { fua: boolean; noHole: boolean; fastZero: boolean },
  ): Promise<void>;
  /** Prefetches the range; no change in contents. */
  cache?(offset: number, length: number): Promise<void>;
  /** Allocation of the range, as consecutive extents from `offset` (see above). */
  blockStatus(offset: number, length: number): Promise<Extent[]>;
  /**
   * Called once when a connection starts transmission with this export object, and
   * `detach` once when that connection has closed and its last request has finished (the
   * export is in use in between: the daemon keeps the device busy).
   */
  attach?(): void;
  detach?(): void;
}

/** One run of bytes with the same allocation (`base:allocation`). */
export interface Extent {
  length: number;
  /** Not allocated: writing here may fail with ENOSPC. */
  hole: boolean;
  /** Reads as zeroes. */
  zero: boolean;
}

/** An export as `NBD_OPT_LIST` shows it. */
export interface ExportListing {
  name: string;
  description?: string;
}

/**
 * The exports a server offers, looked up by name on every handshake (so exports can come
 * and go while the server runs). `get("")` is the default export, if there is one.
 */
export interface ExportRegistry {
  get(name: string): Export | undefined;
  list(): ExportListing[];
}

/**
 * A registry over a fixed set of exports; the empty name selects `defaultName` (the first
 * export when not given), or nothing when the set is empty.
 */
export function staticRegistry(
  exports: readonly Export[],
  options: { defaultName?: string } = {},
): ExportRegistry {
  const byName = new Map(exports.map((e) => [e.name, e]));
  const defaultName = options.defaultName ?? exports[0]?.name;
  return {
    get: (name) => byName.get(name === '' && defaultName !== undefined ? defaultName : name),
    list: () => exports.map((e) => listing(e)),
  };
}

function listing(e: Export): ExportListing {
  return e.description === undefined
    ? { name: e.name }
    : { name: e.name, description: e.description };
}
