/**
 * CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, computed by `@node-rs/crc32` (the
 * CPU's crc32 instruction or SIMD folding, several times faster than a JS table on 4 KiB
 * blocks). The dm-thin metadata format checksums blocks with the raw register (preset
 * 0xFFFFFFFF, no final inversion); `crc32c` is the standard check value (with the final
 * inversion). The raw register is the standard value inverted.
 */

import { crc32c as nativeCrc32c } from '@node-rs/crc32';

/** The CRC register after `bytes[start, end)`, preset 0xFFFFFFFF, without final inversion. */
export function crc32cRegister(bytes: Uint8Array, start = 0, end = bytes.length): number {
  const range = start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end);
  return ~nativeCrc32c(range) >>> 0;
}

/** The standard CRC-32C of `bytes` (crc32c("123456789") = 0xE3069283). */
export function crc32c(bytes: Uint8Array): number {
  return nativeCrc32c(bytes) >>> 0;
}
