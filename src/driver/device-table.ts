/**
 * The device set's table of named devices: one JSON file per device under ROOT/metadata,
 * mirrored in memory. Lookups say plainly what is missing; a device whose removal was
 * deferred is still in the table (it holds its thin id) but no longer usable.
 */

import path from 'node:path';
import { BusyError, ExistsError, NotFoundError } from '../util/index.js';
import { checkDeviceName } from './device-names.js';
import { listStateFiles, readStateFile, removeStateFile, writeStateFile } from './state-files.js';
import { type DeviceRecord, decodeDevice, encodeDevice, OWN_FILES } from './state-records.js';

export class DeviceTable {
  readonly dir: string;
  private readonly records = new Map<string, DeviceRecord>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Reads every device file of the folder. */
  async load(): Promise<void> {
    for (const name of await deviceFileNames(this.dir)) {
      const file = this.file(name);
      this.records.set(name, decodeDevice(file, await readStateFile(file)));
    }
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  /** Writes `name`'s file, then the table. */
  async save(name: string, record: DeviceRecord): Promise<void> {
    await writeStateFile(this.file(name), encodeDevice(record));
    this.records.set(name, record);
  }

  /** Removes `name`'s file, then its entry. */
  async remove(name: string): Promise<void> {
    await removeStateFile(this.file(name));
    this.records.delete(name);
  }

  /**
   * Removes the file of `name` (a device name, or '' for Docker's base device) if it is
   * missing or names thin id `deviceId`: a file that names another id is not that device's.
   */
  async removeIfOf(name: string, deviceId: number): Promise<void> {
    const fileName = name === '' ? 'base' : name;
    try {
      checkDeviceName(fileName);
    } catch {
      return;
    }
    const json = await readStateFile(this.file(fileName));
    if (json === undefined || decodeDevice(this.file(fileName), json).deviceId === deviceId) {
      await this.remove(fileName);
    }
  }

  entries(): [string, DeviceRecord][] {
    return [...this.records];
  }

  usedIds(): Set<number> {
    return new Set([...this.records.values()].map((r) => r.deviceId));
  }

  get deferredCount(): number {
    return [...this.records.values()].filter((r) => r.deleted).length;
  }

  /** Fails unless `name` is free for a new device. */
  checkNew(name: string): void {
    const existing = this.records.get(name);
    if (existing === undefined) return;
    if (existing.deleted) {
      throw new BusyError(`device ${name} is being removed (it is still in use)`, {
        hint: 'wait until it is released, or choose another name',
      });
    }
    throw new ExistsError(`device ${name} already exists`, {
      hint: "choose another name, or remove it first with 'thinp device remove'",
    });
  }

  peek(name: string): DeviceRecord | undefined {
    return this.records.get(name);
  }

  /** The record of `name`; NotFoundError if there is none. */
  record(name: string): DeviceRecord {
    const record = this.records.get(name);
    if (record === undefined) {
      throw new NotFoundError(`there is no device ${JSON.stringify(name)}`, {
        hint: "'thinp device list' shows the devices",
      });
    }
    return record;
  }

  /** The record of `name`, which must not be waiting for removal. */
  live(name: string): DeviceRecord {
    const record = this.record(name);
    if (record.deleted) {
      throw new NotFoundError(`device ${name} is being removed`, {
        hint: 'it goes once released; choose another device',
      });
    }
    return record;
  }

  /** The origin's name while a device of that name, older than `r`, exists. */
  originOf(r: DeviceRecord): string | null {
    if (r.origin === undefined) return null;
    const origin = this.records.get(r.origin);
    const older = origin !== undefined && origin.transactionId < r.transactionId;
    return older && !origin.deleted ? r.origin : null;
  }
}

/** The device files of `dir`: every state file but the device set's own. */
export async function deviceFileNames(dir: string): Promise<string[]> {
  const names = await listStateFiles(dir);
  return names.filter((n) => !OWN_FILES.includes(n));
}

/** Device files of an earlier pool would be taken for devices of a new one: refuses them. */
export async function refuseOldDeviceFiles(dir: string): Promise<void> {
  const devices = await deviceFileNames(dir);
  if (devices.length === 0) return;
  const shown = `${devices.slice(0, 3).join(', ')}${devices.length > 3 ? ', ...' : ''}`;
  throw new ExistsError(`${dir} holds device files (${shown}) but there is no pool`, {
    hint: `remove ${dir} if those devices are gone, then create the pool`,
  });
}
