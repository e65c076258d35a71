/**
 * Raw reads of metadata blocks for the checker. Unlike the block manager, a failed check
 * is not thrown: it comes back as a message, so that the caller can record it and go on
 * with the rest of the metadata.
 *
 * A walker that knows which blocks it reads next (the children of a node) announces them
 * with `prefetch`: they are read at once, neighbouring blocks in one device read, and held
 * until `read` takes them or `forget` drops them.
 */

import type { BlockDevice } from '../../block/index.js';
import { blockChecksum, CSUM_XOR, METADATA_BLOCK_SIZE } from '../../pdata/index.js';

/** The most blocks one device read of `prefetch` covers (256 KiB). */
const PREFETCH_RUN_BLOCKS = 64;

/** The block kinds with a checksummed header, as the messages name them. */
export const BLOCK_KIND = {
  superblock: { name: 'superblock', xor: CSUM_XOR.superblock },
  node: { name: 'btree node', xor: CSUM_XOR.btreeNode },
  bitmap: { name: 'space map bitmap', xor: CSUM_XOR.bitmap },
  index: { name: 'metadata index block', xor: CSUM_XOR.index },
} as const;

export type BlockKind = (typeof BLOCK_KIND)[keyof typeof BLOCK_KIND];

export type CheckedBlock = { buf: Buffer; error?: undefined } | { buf?: undefined; error: string };

const BLOCKNR_OFFSET = 8;

export class BlockReader {
  readonly device: BlockDevice;
  /** Blocks the device holds. */
  readonly deviceBlocks: number;
  /** Blocks that may be referenced: the device, or less once the space map's size is known. */
  limit: number;
  /** Device reads so far. */
  reads = 0;

  constructor(device: BlockDevice) {
    this.device = device;
    this.deviceBlocks = Math.floor(device.size / METADATA_BLOCK_SIZE);
    this.limit = this.deviceBlocks;
  }

  /** Blocks read ahead by `prefetch`, not taken yet. */
  private readonly ahead = new Map<number, Buffer>();

  /** Block `loc` as it is on the device; `loc` must be below `deviceBlocks`. */
  async read(loc: number): Promise<Buffer> {
    const early = this.ahead.get(loc);
    if (early !== undefined) {
      this.ahead.delete(loc);
      return early;
    }
    const buf = Buffer.alloc(METADATA_BLOCK_SIZE);
    await this.device.read(buf, loc * METADATA_BLOCK_SIZE);
    this.reads++;
    return buf;
  }

  /**
   * Reads the blocks `locs` now, for `read` to take later: runs of neighbouring blocks in
   * one device read each, every run at once. Locations beyond the device are left to `read`
   * (and its error).
   */
  async prefetch(locs: readonly number[]): Promise<void> {
    const wanted = locs
      .filter((l) => Number.isSafeInteger(l) && l >= 0 && l < this.deviceBlocks)
      .filter((l) => !this.ahead.has(l));
    const sorted = [...new Set(wanted)].sort((a, b) => a - b);
    const runs: Array<{ first: number; count: number }> = [];
    for (const loc of sorted) {
      const last = runs[runs.length - 1];
      if (
        last !== undefined &&
        last.first + last.count === loc &&
        last.count < PREFETCH_RUN_BLOCKS
      ) {
        last.count++;
      } else {
        runs.push({ first: loc, count: 1 });
      }
    }
    await Promise.all(
      runs.map(async ({ first, count }) => {
        const buf = Buffer.alloc(count * METADATA_BLOCK_SIZE);
        await this.device.read(buf, first * METADATA_BLOCK_SIZE);
        this.reads++;
        for (let k = 0; k < count; k++) {
          const at = k * METADATA_BLOCK_SIZE;
          this.ahead.set(first + k, buf.subarray(at, at + METADATA_BLOCK_SIZE));
        }
      }),
    );
  }

  /** Drops blocks read ahead that will not be taken after all. */
  forget(locs: readonly number[]): void {
    for (const loc of locs) this.ahead.delete(loc);
  }

  /**
   * Block `loc` read as `kind`: its checksum and its `blocknr` field verified. Returns the
   * buffer, or a message saying what is wrong (the caller names the block).
   */
  async readChecked(loc: number, kind: BlockKind): Promise<CheckedBlock> {
    if (!Number.isSafeInteger(loc) || loc < 0 || loc >= this.deviceBlocks) {
      return { error: `${kind.name} lies beyond the end of the metadata device` };
    }
    const buf = await this.read(loc);
    const error = headerProblem(buf, loc, kind);
    return error === undefined ? { buf } : { error };
  }
}

/** What is wrong with the checksum or the `blocknr` of `buf` read as `kind` at `loc`. */
export function headerProblem(buf: Buffer, loc: number, kind: BlockKind): string | undefined {
  const stored = buf.readUInt32LE(0);
  const wanted = blockChecksum(buf, kind.xor);
  if (stored !== wanted) {
    return `bad checksum in ${kind.name}: stored 0x${hex(stored)}, computed 0x${hex(wanted)}`;
  }
  const lo = buf.readUInt32LE(BLOCKNR_OFFSET);
  const hi = buf.readUInt32LE(BLOCKNR_OFFSET + 4);
  if (hi !== 0 || lo !== loc) {
    const says = hi === 0 ? `${lo}` : `${BigInt(hi) * 2n ** 32n + BigInt(lo)}`;
    return `bad block nr in ${kind.name}: it says it is block ${says}`;
  }
  return undefined;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
