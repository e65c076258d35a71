/**
 * The expected reference counts of metadata blocks (format §8.1), gathered while walking
 * from every root, and what each block was reached as. Every reference is counted; a
 * caller descends into a block only the first time it is reached.
 */

import { RefCounts } from './counts.js';
import type { Area, ProblemLog } from './problems.js';

/** What a referenced block holds; a block reached as two different things is corrupt. */
export const USE = {
  superblock: 1,
  heldSuperblock: 2,
  metadataIndex: 3,
  metadataBitmap: 4,
  dataBitmap: 5,
  detailsTree: 6,
  topTree: 7,
  bottomTree: 8,
  metadataRefTree: 9,
  dataIndexTree: 10,
  dataRefTree: 11,
} as const;

export type Use = (typeof USE)[keyof typeof USE];

const USE_NAME: Record<Use, string> = {
  1: 'the superblock',
  2: 'the held superblock copy',
  3: 'the metadata space map index block',
  4: 'a metadata space map bitmap',
  5: 'a data space map bitmap',
  6: 'a details tree node',
  7: 'a top-level mapping tree node',
  8: 'a bottom-level mapping tree node',
  9: 'a metadata ref-count tree node',
  10: 'a data space map index tree node',
  11: 'a data ref-count tree node',
};

/** The answer of `ref`: read the block now, it was read before, or do not read it. */
export type RefResult = 'first' | 'again' | 'invalid';

export class MetadataRefs {
  readonly expected = new RefCounts();
  private readonly uses: Uint8Array;

  /** `limit`: blocks at or beyond it are outside the metadata space and never read. */
  constructor(
    private readonly log: ProblemLog,
    readonly limit: number,
  ) {
    this.uses = new Uint8Array(limit);
  }

  /**
   * Counts one reference to `loc` as a block of `use`. Reports a location outside the
   * metadata space, or a block reached as two different things, and returns 'invalid' for
   * both: the caller must not read it. `what` prefixes the messages ("thin device 3: ").
   */
  ref(loc: number, use: Use, area: Area, what = ''): RefResult {
    if (!Number.isSafeInteger(loc) || loc < 0 || loc >= this.limit) {
      const where = Number.isSafeInteger(loc) ? `block ${loc}` : 'a block beyond 2^53';
      this.log.fatal(
        area,
        `${what}reference to ${where}, beyond the ${this.limit} blocks of the metadata space map`,
      );
      return 'invalid';
    }
    const before = this.uses[loc] as number;
    if (before !== 0 && before !== use) {
      this.log.fatal(
        area,
        `${what}block is used as ${USE_NAME[use]} and as ${USE_NAME[before as Use]}`,
        loc,
      );
      return 'invalid';
    }
    this.uses[loc] = use;
    this.expected.inc(loc);
    return before === 0 ? 'first' : 'again';
  }
}
