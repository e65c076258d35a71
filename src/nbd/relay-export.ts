/**
 * The relay's `Export`: what the daemon's export advertised, each call forwarded through a
 * `RelayClient` (which outlives the daemon). An error number from the daemon is thrown as
 * an `IoError` whose cause carries the host errno name, so `toNbdErrno` gives the client
 * the same number the daemon sent.
 */

import { IoError } from '../util/index.js';
import type { Export, Extent } from './export.js';
import type { RelayClient, RelayRequest } from './relay-client.js';
import { CMD, CMD_FLAG, TRANSMISSION_FLAG as F, nameOfErrno } from './wire.js';

export class RelayExport implements Export {
  readonly size: number;
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  readonly canTrim: boolean;
  readonly canWriteZeroes: boolean;
  readonly canMultiConn = false;
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  readonly maxBlockSize: number;
  private readonly canFua: boolean;

  constructor(
    readonly name: string,
    private readonly client: RelayClient,
  ) {
    const { info } = client;
    const flags = info.transmissionFlags;
    this.size = info.size;
    this.readOnly = (flags & F.readOnly) !== 0;
    this.canFlush = (flags & F.sendFlush) !== 0;
    this.canFua = (flags & F.sendFua) !== 0;
    this.canTrim = (flags & F.sendTrim) !== 0;
    this.canWriteZeroes = (flags & F.sendWriteZeroes) !== 0;
    this.minBlockSize = info.minBlockSize;
    this.preferredBlockSize = Math.max(info.preferredBlockSize, 512, info.minBlockSize);
    this.maxBlockSize = info.maxBlockSize;
  }

  private async forward(r: RelayRequest, op: string): Promise<void> {
    const error = await this.client.request(r);
    if (error === 0) return;
    const code = nameOfErrno(error).replace(/^NBD_/, '');
    throw new IoError(`export ${this.name}`, op, `the daemon answered ${code}`, {
      cause: Object.assign(new Error(code), { code }),
    });
  }

  private fua(on: boolean): number {
    return on && this.canFua ? CMD_FLAG.FUA : 0;
  }

  read(buf: Buffer, offset: number): Promise<void> {
    return this.forward(
      { type: CMD.READ, flags: 0, offset, length: buf.length, into: buf },
      'read',
    );
  }

  write(buf: Buffer, offset: number, o: { fua: boolean }): Promise<void> {
    const r = { type: CMD.WRITE, flags: this.fua(o.fua), offset, length: buf.length, payload: buf };
    return this.forward(r, 'write');
  }

  flush(): Promise<void> {
    return this.forward({ type: CMD.FLUSH, flags: 0, offset: 0, length: 0 }, 'flush');
  }

  trim(offset: number, length: number, o: { fua: boolean }): Promise<void> {
    return this.forward({ type: CMD.TRIM, flags: this.fua(o.fua), offset, length }, 'trim');
  }

  writeZeroes(offset: number, length: number, o: { fua: boolean; noHole: boolean }): Promise<void> {
    const flags = this.fua(o.fua) | (o.noHole ? CMD_FLAG.NO_HOLE : 0);
    return this.forward({ type: CMD.WRITE_ZEROES, flags, offset, length }, 'write-zeroes');
  }

  /** Allocation is not relayed: everything reads as data, which is always a true answer. */
  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    return [{ length: Math.min(length, this.size - offset), hole: false, zero: false }];
  }
}
