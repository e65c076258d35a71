/**
 * Splitting a byte range of a thin device into per-block pieces: the data path works one
 * data block at a time, since each block is mapped, shared or provisioned on its own.
 */

export interface BlockPiece {
  /** The virtual block. */
  vblock: number;
  /** Offset of the piece inside the block. */
  inner: number;
  length: number;
  /** Offset of the piece inside the caller's buffer (or range). */
  at: number;
}

/** The pieces of [offset, offset + length) for blocks of `blockSize` bytes, in order. */
export function splitIntoBlocks(offset: number, length: number, blockSize: number): BlockPiece[] {
  const pieces: BlockPiece[] = [];
  let at = 0;
  while (at < length) {
    const pos = offset + at;
    const vblock = Math.floor(pos / blockSize);
    const inner = pos - vblock * blockSize;
    const n = Math.min(blockSize - inner, length - at);
    pieces.push({ vblock, inner, length: n, at });
    at += n;
  }
  return pieces;
}

/** The whole blocks inside [offset, offset + length): [first, end), possibly empty. */
export function wholeBlocks(
  offset: number,
  length: number,
  blockSize: number,
): { first: number; end: number } {
  const first = Math.ceil(offset / blockSize);
  const end = Math.floor((offset + length) / blockSize);
  return { first, end: Math.max(first, end) };
}
