/**
 * A rescue session: a legacy root opened read-only, its devices served by an NBD server of
 * this process on a socket in a private work directory, and mounted read-only through
 * thinp's own mount path (nbdfuse + loop, or nbd-client), ext4 with `noload` and xfs with
 * `norecovery`, so that not even a journal replay writes (the export refuses writes anyway).
 *
 * Tree work on the mounts (tar) runs in archive's worker processes: this process serves
 * the devices they read. `close()` unmounts whatever is still mounted, stops the server and
 * removes the work directory, also after a failure.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chooseAttacher, type FsType, type MountedFs, mountDevice } from '../mount/index.js';
import { type ExportRegistry, NbdServer } from '../nbd/index.js';
import { BadInputError, NotFoundError } from '../util/index.js';
import { LegacyDeviceExport } from './device-export.js';
import { claimWorkDir, cleanLeftovers, WORK_PREFIX } from './leftovers.js';
import { type LegacyPool, openLegacyPool } from './legacy-pool.js';
import { type LegacyCatalog, type LegacyPaths, readCatalog } from './legacy-root.js';

const EXT_MAGIC_OFFSET = 1080;
const EXT_MAGIC = 0xef53;
const XFS_MAGIC = 'XFSB';

/** A mounted legacy device: its `rootfs/` directory, where Docker kept the layer's files. */
export interface MountedLegacy {
  hash: string;
  rootfs: string;
  type: FsType;
}

export class RescueSession {
  private server: NbdServer | undefined;
  private readonly mounts: MountedFs[] = [];
  private readonly mountedBy = new Map<string, MountedLegacy>();
  private readonly exported = new Map<string, LegacyDeviceExport>();

  private constructor(
    readonly catalog: LegacyCatalog,
    readonly pool: LegacyPool,
    readonly workDir: string,
    /** Work directories of earlier rescues that did not close, cleaned at open. */
    readonly cleaned: string[],
    /** What rescue passed over and why (a device whose creation was cut short). */
    readonly notes: string[],
  ) {}

  /**
   * Opens the root at `paths`; the work directory goes under `workParent` (default: tmp),
   * where the work directories of rescues that did not close are cleaned first.
   */
  static async open(paths: LegacyPaths, workParent = tmpdir()): Promise<RescueSession> {
    const catalog = await readCatalog(paths);
    const cleaned = await cleanLeftovers(workParent);
    const workDir = await mkdtemp(path.join(workParent, WORK_PREFIX));
    try {
      await claimWorkDir(workDir);
      const pool = await openLegacyPool(paths, workDir);
      const notes = dropUnfinished(catalog, pool.metadata.transactionId);
      return new RescueSession(catalog, pool, workDir, cleaned, notes);
    } catch (err) {
      await rm(workDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The thin device id and size of the driver's device `hash`. */
  device(hash: string): { id: number; size: number } {
    const record = this.catalog.devices.get(hash);
    if (record === undefined) {
      throw new NotFoundError(
        `the devicemapper driver has no device ${hash} (no ${path.join(this.catalog.paths.recordsDir, hash)})`,
        { hint: 'the root is incomplete: its image store names a device the driver lost' },
      );
    }
    return { id: record.deviceId, size: record.size };
  }

  /** Bytes mapped by device `hash` (its blocks, shared with snapshots included). */
  async mappedBytes(hash: string): Promise<number> {
    const { id } = this.device(hash);
    if (!(await this.pool.metadata.exists(id))) return 0;
    return (await this.pool.metadata.mappedBlocks(id)) * this.pool.blockSize;
  }

  /** Mounts device `hash` read-only under the work directory (once; later calls share it). */
  async mount(hash: string): Promise<MountedLegacy> {
    const known = this.mountedBy.get(hash);
    if (known !== undefined) return known;
    const { id, size } = this.device(hash);
    if (!(await this.pool.metadata.exists(id))) {
      throw new NotFoundError(`thin device ${id} (${hash}) is not in the pool's metadata`, {
        hint: 'it was lost (see the repair report) or deleted; rescue another image or container',
      });
    }
    const exp = new LegacyDeviceExport(this.pool, `dev-${id}`, id, size);
    const type = await filesystemOf(exp, hash);
    await this.startServer();
    this.exported.set(exp.name, exp);
    const attacher = await chooseAttacher({
      nbdSocket: this.socket,
      stateDir: path.join(this.workDir, 'mounts'),
    });
    const target = path.join(this.workDir, 'mnt', hash);
    const options = type === 'ext4' ? ['noload'] : ['norecovery'];
    const mounted = await mountDevice(attacher, exp.name, target, {
      type,
      options,
      readOnly: true,
    });
    this.mounts.push(mounted);
    const result = { hash, rootfs: path.join(target, 'rootfs'), type };
    this.mountedBy.set(hash, result);
    return result;
  }

  private closing: Promise<void> | undefined;

  /**
   * Unmounts everything, stops serving, closes the pool and removes the work directory;
   * once (later calls wait for the first). What fails is thrown and the work directory kept.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    const errors: unknown[] = [];
    for (const m of this.mounts.splice(0).reverse()) {
      await m.unmount().catch((e: unknown) => errors.push(e));
    }
    await this.server?.close().catch((e: unknown) => errors.push(e));
    await this.pool.close().catch((e: unknown) => errors.push(e));
    if (errors.length === 0) await rm(this.workDir, { recursive: true, force: true });
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'closing the rescue session failed');
  }

  private get socket(): string {
    return path.join(this.workDir, 'nbd.sock');
  }

  private async startServer(): Promise<NbdServer> {
    if (this.server !== undefined) return this.server;
    const registry: ExportRegistry = {
      get: (name: string) => this.exported.get(name),
      list: () => [...this.exported.values()].map((e) => ({ name: e.name })),
    };
    const server = new NbdServer({ registry });
    await server.listen({ path: this.socket });
    this.server = server;
    return server;
  }
}

/** The filesystem on a device, from its superblock's magic: Docker's driver made ext4 or xfs. */
async function filesystemOf(exp: LegacyDeviceExport, hash: string): Promise<FsType> {
  const head = Buffer.alloc(4096);
  await exp.read(head, 0);
  if (head.toString('latin1', 0, 4) === XFS_MAGIC) return 'xfs';
  if (head.readUInt16LE(EXT_MAGIC_OFFSET) === EXT_MAGIC) return 'ext4';
  throw new BadInputError(`device ${hash} holds neither an ext4 nor an xfs filesystem`, {
    hint: 'its first blocks may be lost; read it raw with the repaired metadata, or rescue another image or container',
  });
}

/**
 * Docker's driver rolls back a transaction opened but not committed to the pool (its
 * transaction-metadata's id above the pool's): the device it was making is half made. Rescue
 * passes it over as Docker would have, and says so.
 */
function dropUnfinished(catalog: LegacyCatalog, poolTransaction: number): string[] {
  const tx = catalog.transaction;
  if (tx === undefined || tx.openTransactionId <= poolTransaction) return [];
  if (!catalog.devices.has(tx.deviceHash)) return [];
  catalog.devices.delete(tx.deviceHash);
  const name = tx.deviceHash === '' ? 'base' : tx.deviceHash;
  return [
    `device ${name} (thin id ${tx.deviceId}) was being made when Docker stopped (transaction ${tx.openTransactionId}, the pool's is ${poolTransaction}); it is passed over, as Docker would have rolled it back`,
  ];
}
