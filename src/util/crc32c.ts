/**
 * CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, table-driven. The dm-thin metadata
 * format checksums blocks with the raw register (preset 0xFFFFFFFF, no final inversion);
 * `crc32c` is the standard check value (with the final inversion).
 */

const POLY = 0x82f63b78;

const TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i;
    for (let bit = 0; bit < 8; bit++) {
      r = r & 1 ? (r >>> 1) ^ POLY : r >>> 1;
    }
    table[i] = r >>> 0;
  }
  return table;
})();

/** The CRC register after `bytes[start, end)`, preset 0xFFFFFFFF, without final inversion. */
export function crc32cRegister(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let r = 0xffffffff;
  for (let i = start; i < end; i++) {
    r = (TABLE[(r ^ (bytes[i] as number)) & 0xff] as number) ^ (r >>> 8);
  }
  return r >>> 0;
}

/** The standard CRC-32C of `bytes` (crc32c("123456789") = 0xE3069283). */
export function crc32c(bytes: Uint8Array): number {
  return (crc32cRegister(bytes) ^ 0xffffffff) >>> 0;
}
