/**
 * What the transaction manager needs from the metadata space map. The metadata map's counts
 * live in memory (at most 1 MiB for the largest metadata device the format allows), so these
 * calls are synchronous.
 *
 * Contracts:
 * - `newBlock` never returns a block that is in use now or was in use at the last commit:
 *   a block freed in this transaction is not reused before the commit.
 * - Counts never go below zero; `dec` of a free block is a corruption, reported as such.
 */
export interface MetadataAllocator {
  /** Allocates a free block and sets its count to 1. */
  newBlock(): number;
  inc(block: number): void;
  dec(block: number): void;
  count(block: number): number;
}
