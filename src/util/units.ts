/**
 * Branded units, as the kernel has `sector_t` and `dm_block_t`: a count of bytes cannot be
 * passed where a count of sectors or blocks is expected without saying so.
 */

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A length or offset in bytes; always a safe non-negative integer. */
export type Bytes = Brand<number, 'Bytes'>;

export const SECTOR_SIZE = 512 as Bytes;

/** Brands `n` as bytes; throws a RangeError unless it is a safe non-negative integer. */
export function bytes(n: number): Bytes {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`not a byte count: ${n}`);
  }
  return n as Bytes;
}
