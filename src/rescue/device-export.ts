/**
 * One thin device of a legacy pool as a read-only NBD export: a read looks up each data
 * block's mapping and reads the data device there, or gives zeroes where nothing is mapped.
 * No verb writes: the export is `readOnly`, and flush, trim and zeroing are not offered, so
 * the NBD server refuses them before they reach here.
 */

import { type Export, type Extent, preferredBlockSizeFor } from '../nbd/index.js';
import { ReadOnlyError } from '../util/index.js';
import type { LegacyPool } from './legacy-pool.js';

const MIN_BLOCK = 512;
const MAX_BLOCK = 32 * 1024 * 1024;

export class LegacyDeviceExport implements Export {
  readonly readOnly = true;
  readonly canFlush = false;
  readonly canTrim = false;
  readonly canWriteZeroes = false;
  readonly canMultiConn = true;
  readonly minBlockSize = MIN_BLOCK;
  readonly preferredBlockSize: number;
  readonly maxBlockSize = MAX_BLOCK;
  readonly description: string;

  constructor(
    private readonly pool: LegacyPool,
    readonly name: string,
    private readonly deviceId: number,
    readonly size: number,
  ) {
    this.preferredBlockSize = preferredBlockSizeFor(pool.blockSize, MIN_BLOCK, 64 * 1024);
    this.description = `legacy thin device ${deviceId}, read-only`;
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    const bs = this.pool.blockSize;
    let done = 0;
    while (done < buf.length) {
      const at = offset + done;
      const vblock = Math.floor(at / bs);
      const within = at - vblock * bs;
      const n = Math.min(buf.length - done, bs - within);
      const piece = buf.subarray(done, done + n);
      const mapping = await this.pool.metadata.lookup(this.deviceId, vblock);
      if (mapping === undefined) piece.fill(0);
      else await this.pool.data.read(piece, mapping.dataBlock * bs + within);
      done += n;
    }
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    const bs = this.pool.blockSize;
    const vblock = Math.floor(offset / bs);
    const end = Math.min(offset + length, (vblock + 1) * bs, this.size);
    const mapped = (await this.pool.metadata.lookup(this.deviceId, vblock)) !== undefined;
    return [{ length: end - offset, hole: !mapped, zero: !mapped }];
  }

  write(): Promise<void> {
    return Promise.reject(refused());
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  trim(): Promise<void> {
    return Promise.reject(refused());
  }

  writeZeroes(): Promise<void> {
    return Promise.reject(refused());
  }
}

function refused(): ReadOnlyError {
  return new ReadOnlyError('a legacy device is served read-only', {
    hint: "rescue never writes the source; use 'thinp rescue docker import' to get a writable copy",
  });
}
