/**
 * Reference counts for a large, sparse range of blocks: one byte per block, allocated in
 * pages only where some block is counted, with the exact value of counts above 254 kept
 * apart. A pool with millions of data blocks costs one byte per block that is counted
 * (rounded up to pages), never a number or an object per block.
 */

const PAGE_ENTRIES = 16384;
const SATURATED = 255;

export class RefCounts {
  private readonly pages = new Map<number, Uint8Array>();
  private readonly overflow = new Map<number, number>();

  /** Adds one to the count of `b` and returns the new count. */
  inc(b: number): number {
    const page = this.pageOf(b, true) as Uint8Array;
    const i = b % PAGE_ENTRIES;
    const small = page[i] as number;
    if (small < SATURATED - 1) {
      page[i] = small + 1;
      return small + 1;
    }
    const next = (this.overflow.get(b) ?? small) + 1;
    page[i] = SATURATED;
    this.overflow.set(b, next);
    return next;
  }

  /** The count of `b`: 0 for a block never counted. */
  get(b: number): number {
    const page = this.pageOf(b, false);
    if (page === undefined) return 0;
    const small = page[b % PAGE_ENTRIES] as number;
    return small === SATURATED ? (this.overflow.get(b) ?? SATURATED) : small;
  }

  private pageOf(b: number, create: boolean): Uint8Array | undefined {
    const key = Math.floor(b / PAGE_ENTRIES);
    let page = this.pages.get(key);
    if (page === undefined && create) {
      page = new Uint8Array(PAGE_ENTRIES);
      this.pages.set(key, page);
    }
    return page;
  }
}
