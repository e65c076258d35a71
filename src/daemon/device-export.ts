/**
 * Thin devices as NBD exports: `DeviceExports` is the registry the daemon hands the NBD
 * server, looking devices up by name on every handshake, so devices created or removed
 * through the API appear and disappear at once.
 *
 * Contracts:
 * - export name = device name, export size = device size; there is no default export;
 * - requests are 512-byte aligned (device sizes are whole sectors), the preferred size is
 *   the pool's block size (the largest power of two dividing it) and the largest 32 MiB;
 * - flush, trim, write-zeroes and multi-conn are offered: every export shares the one pool,
 *   whose commit makes every completed write on every connection durable;
 * - a fast zero is accepted only where it is an unmap of whole blocks, otherwise it fails
 *   at once with `UnavailableError`;
 * - a device is busy (`DeviceSet.open`) while at least one connection is in transmission
 *   with it: the first attach opens it, the last detach releases it (which finishes a
 *   deferred removal); `releaseAll()` at daemon stop releases whatever is left;
 * - a device waiting for a deferred removal is still served while something holds it open
 *   (a relay coming back after a restart, for a mount that outlived its unmount).
 */

import type { DeviceEntry, DeviceSet } from '../driver/index.js';
import {
  type Export,
  type ExportListing,
  type ExportRegistry,
  type Extent,
  preferredBlockSizeFor,
} from '../nbd/index.js';
import type { ThinDevice } from '../pool/index.js';
import { NotFoundError, type ReadPlan, UnavailableError } from '../util/index.js';

const MIN_BLOCK = 512;
const MAX_BLOCK = 32 * 1024 * 1024;

export class DeviceExports implements ExportRegistry {
  private readonly opened = new Map<string, ThinDevice>();
  private readonly attached = new Map<string, number>();

  constructor(
    readonly set: DeviceSet,
    private readonly onOpen: (name: string) => void = () => {},
  ) {}

  /** The export of device `name`, or undefined if there is none (or `name` is ""). */
  get(name: string): Export | undefined {
    if (name === '') return undefined;
    try {
      return new DeviceExport(this, this.set.getInUse(name), this.set.pool.blockSize);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  list(): ExportListing[] {
    return this.set.names().map((name) => ({ name, description: `thin device ${name}` }));
  }

  /** Names of the devices held open for NBD. */
  get openNames(): string[] {
    return [...this.opened.keys()];
  }

  /** The I/O handle of `entry`, opening the device (making it busy) on first use. */
  device(entry: DeviceEntry): ThinDevice {
    const held = this.opened.get(entry.name);
    if (held !== undefined && held.id === entry.id) return held;
    if (held !== undefined) {
      throw new NotFoundError(`device ${entry.name} was replaced while a client used it`, {
        hint: 'reconnect',
      });
    }
    const dev = this.set.open(entry.name);
    this.opened.set(entry.name, dev);
    this.onOpen(entry.name);
    return dev;
  }

  /** A connection started using `entry`: the device is busy from now on. */
  attach(entry: DeviceEntry): void {
    this.attached.set(entry.name, (this.attached.get(entry.name) ?? 0) + 1);
    this.device(entry);
  }

  /** A connection using `entry` is gone; the last one releases the device. */
  async detach(entry: DeviceEntry): Promise<void> {
    const left = (this.attached.get(entry.name) ?? 1) - 1;
    if (left > 0) {
      this.attached.set(entry.name, left);
      return;
    }
    this.attached.delete(entry.name);
    if (this.opened.get(entry.name)?.id !== entry.id) return;
    this.opened.delete(entry.name);
    await this.set.release(entry.name);
  }

  /** Releases every device opened for NBD (at daemon stop, once the server has drained). */
  async releaseAll(): Promise<void> {
    const names = [...this.opened.keys()];
    this.opened.clear();
    this.attached.clear();
    for (const name of names) await this.set.release(name);
  }
}

const FUA = { fua: true } as const;
const NO_FUA = { fua: false } as const;

/** One device as an `Export`; made per handshake, cheap. */
class DeviceExport implements Export {
  readonly name: string;
  readonly description: string;
  readonly size: number;
  readonly readOnly = false;
  readonly canFlush = true;
  readonly canTrim = true;
  readonly canWriteZeroes = true;
  readonly canFastZero = true;
  readonly canMultiConn = true;
  readonly minBlockSize = MIN_BLOCK;
  readonly preferredBlockSize: number;
  readonly maxBlockSize = MAX_BLOCK;

  constructor(
    private readonly registry: DeviceExports,
    private readonly entry: DeviceEntry,
    private readonly poolBlockSize: number,
  ) {
    this.name = entry.name;
    this.description = `thin device ${entry.name} (id ${entry.id})`;
    this.size = entry.size;
    this.preferredBlockSize = preferredSize(poolBlockSize);
  }

  private get dev(): ThinDevice {
    return this.registry.device(this.entry);
  }

  attach(): void {
    this.registry.attach(this.entry);
  }

  detach(): void {
    this.registry.detach(this.entry).catch(() => undefined);
  }

  // Reads and writes hand on the device's promise, with no async wrapper of their own: they
  // are on every request's path. A throw of the `dev` getter (the device was replaced under
  // the client) still comes back as a rejection.
  read(buf: Buffer, offset: number): Promise<void> {
    try {
      return this.dev.read(buf, offset);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  readNow(buf: Buffer, offset: number): boolean {
    return this.dev.readAtOnce(buf, offset);
  }

  planRead(offset: number, length: number, plan: ReadPlan): boolean {
    return this.dev.planRead(offset, length, plan);
  }

  writeNow(buf: Buffer, offset: number, options: { fua: boolean }): boolean {
    try {
      return this.dev.writeAtOnce(buf, offset, options.fua ? FUA : NO_FUA);
    } catch {
      return false;
    }
  }

  write(buf: Buffer, offset: number, options: { fua: boolean }): Promise<void> {
    try {
      return this.dev.write(buf, offset, options.fua ? FUA : NO_FUA);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async flush(): Promise<void> {
    await this.dev.flush();
  }

  async trim(offset: number, length: number, options: { fua: boolean }): Promise<void> {
    const dev = this.dev;
    await dev.discard(offset, length);
    if (options.fua) await dev.flush();
  }

  async writeZeroes(
    offset: number,
    length: number,
    options: { fua: boolean; noHole: boolean; fastZero: boolean },
  ): Promise<void> {
    if (options.fastZero && !this.isFastZero(offset, length, options.noHole)) {
      throw new UnavailableError('zeroing this range would mean writing zeros', {
        hint: 'zero whole pool blocks without NO_HOLE, or write the zeros',
      });
    }
    await this.dev.writeZeroes(offset, length, { noHole: options.noHole, fua: options.fua });
  }

  /** Mapped runs are data, holes read as zeros. */
  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    const extents = await this.dev.blockStatus(offset, length);
    return extents.map((e) => ({ length: e.length, hole: !e.mapped, zero: !e.mapped }));
  }

  /** Whole blocks without NO_HOLE: an unmap, no data written. */
  private isFastZero(offset: number, length: number, noHole: boolean): boolean {
    const B = this.poolBlockSize;
    const end = offset + length;
    return !noHole && offset % B === 0 && (end % B === 0 || end === this.size);
  }
}

/** The largest power of two that divides the pool's block size, at most 32 MiB. */
export function preferredSize(blockSize: number): number {
  return preferredBlockSizeFor(blockSize, MIN_BLOCK, MAX_BLOCK);
}
