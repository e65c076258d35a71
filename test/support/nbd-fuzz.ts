/**
 * Building blocks of the NBD fuzzers (in process and against the daemon): a valid session
 * prefix, random damage to a byte stream, raw random bytes, and cutting a stream into
 * chunks at random points.
 */

import fc from 'fast-check';
import { wire } from '../../src/nbd/index.js';
import { infoData, metaContextData } from '../unit/nbd/harness.js';

/** A valid session prefix: flags, structured replies, base:allocation, then GO `name`. */
export function sessionPrefix(name: string): Buffer {
  return Buffer.concat([
    wire.encodeClientFlags(wire.CLIENT_FLAG.fixedNewstyle | wire.CLIENT_FLAG.noZeroes),
    wire.encodeOption(wire.OPT.STRUCTURED_REPLY),
    wire.encodeOption(wire.OPT.SET_META_CONTEXT, metaContextData(name, [wire.BASE_ALLOCATION])),
    wire.encodeOption(wire.OPT.GO, infoData(name, [wire.INFO.BLOCK_SIZE])),
  ]);
}

/** Streams of `base` with random damage: flipped, inserted and deleted bytes, or cut short. */
export function mutated(base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc
    .tuple(
      base,
      fc.array(fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom('flip', 'insert', 'delete')), {
        maxLength: 4,
      }),
      fc.option(fc.nat()),
    )
    .map(([bytes, edits, cut]) => {
      let out = Buffer.from(bytes);
      for (const [at, value, kind] of edits) {
        const i = at % (out.length + 1);
        if (kind === 'flip' && i < out.length) out[i] = (out[i] ?? 0) ^ (value | 1);
        if (kind === 'insert')
          out = Buffer.concat([out.subarray(0, i), Buffer.of(value), out.subarray(i)]);
        if (kind === 'delete') out = Buffer.concat([out.subarray(0, i), out.subarray(i + 1)]);
      }
      return cut === null ? out : out.subarray(0, cut % (out.length + 1));
    });
}

/** Up to 512 random bytes. */
export const randomBytesArb: fc.Arbitrary<Buffer> = fc
  .uint8Array({ maxLength: 512 })
  .map((a) => Buffer.from(a));

/** Cuts `bytes` at the given points (taken modulo its length). */
export function split(bytes: Buffer, points: readonly number[]): Buffer[] {
  const cuts = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    chunks.push(bytes.subarray(from, cut));
    from = cut;
  }
  return chunks;
}
