/**
 * CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, slicing-by-8 (eight tables, eight
 * bytes per step). The dm-thin metadata format checksums blocks with the raw register (preset
 * 0xFFFFFFFF, no final inversion); `crc32c` is the standard check value (with the final
 * inversion).
 */

const POLY = 0x82f63b78;

/** TABLES[k][i]: the register after feeding byte i followed by k zero bytes. */
const TABLES: Uint32Array[] = (() => {
  const t0 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i;
    for (let bit = 0; bit < 8; bit++) {
      r = r & 1 ? (r >>> 1) ^ POLY : r >>> 1;
    }
    t0[i] = r >>> 0;
  }
  const tables = [t0];
  for (let k = 1; k < 8; k++) {
    const prev = tables[k - 1] as Uint32Array;
    const t = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      const p = prev[i] as number;
      t[i] = ((p >>> 8) ^ (t0[p & 0xff] as number)) >>> 0;
    }
    tables.push(t);
  }
  return tables;
})();

const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
];

/** The CRC register after `bytes[start, end)`, preset 0xFFFFFFFF, without final inversion. */
export function crc32cRegister(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let r = 0xffffffff;
  let i = start;
  const b = bytes;
  for (; i + 8 <= end; i += 8) {
    const lo =
      r ^
      ((b[i] as number) |
        ((b[i + 1] as number) << 8) |
        ((b[i + 2] as number) << 16) |
        ((b[i + 3] as number) << 24));
    r =
      (T7[lo & 0xff] as number) ^
      (T6[(lo >>> 8) & 0xff] as number) ^
      (T5[(lo >>> 16) & 0xff] as number) ^
      (T4[lo >>> 24] as number) ^
      (T3[b[i + 4] as number] as number) ^
      (T2[b[i + 5] as number] as number) ^
      (T1[b[i + 6] as number] as number) ^
      (T0[b[i + 7] as number] as number);
  }
  for (; i < end; i++) {
    r = (T0[(r ^ (b[i] as number)) & 0xff] as number) ^ (r >>> 8);
  }
  return r >>> 0;
}

/** The standard CRC-32C of `bytes` (crc32c("123456789") = 0xE3069283). */
export function crc32c(bytes: Uint8Array): number {
  return (crc32cRegister(bytes) ^ 0xffffffff) >>> 0;
}
