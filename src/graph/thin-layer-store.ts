/**
 * ThinLayerStore: the LayerStore (layer-store.ts) on a device set. Each layer is a thin
 * device named by its id, a snapshot of its parent's device or of the base device; its
 * record (metadata/<id>) names the parent. Mounts go through an attacher (mount/) to the
 * daemon's own NBD server, so a store without an attacher (the CLI with no daemon running)
 * does everything but mount: create, remove, list, metadata.
 *
 * Locks, in the order they are taken (docs/ARCHITECTURE.md):
 * 1. per-layer locks (`locks`, keyed by layer id; several at once in sorted order): one
 *    operation at a time on a layer, covering its mount count and its device. `create`
 *    holds the new layer's and its parent's; `diff`, `changes` and `diffSize` take each
 *    layer's lock only inside their own get and put, never two at once.
 * 2. the device set's change lock, inside each DeviceSet call.
 * The store never calls back into itself while holding a layer's lock, and the device set
 * never calls the store.
 *
 * A mounted layer holds its device open in the set (`DeviceSet.open`), so removing it
 * defers to its last put exactly as removing a device an NBD client uses does.
 *
 * At open, the store settles what a crash or a stopped daemon left: mounts recorded in the
 * state folder are adopted (one reference each) or cleaned up; scratch devices are
 * removed; layers whose creation did not finish (initialized false) are removed. Without
 * an attacher it only notes recorded mounts and refuses to change those layers.
 */

import { execFile } from 'node:child_process';
import { mkdir, rmdir } from 'node:fs/promises';
import type { Change } from '../archive/index.js';
import type { Config } from '../config/index.js';
import {
  BASE_DEVICE,
  type DeviceSet,
  devicePrefix,
  dockerInfo,
  dockerInfoPairs,
  type HeldDevice,
} from '../driver/index.js';
import type { Attacher, FsType, MountedFs } from '../mount/index.js';
import {
  BadInputError,
  BusyError,
  type Bytes,
  ExistsError,
  formatHumanSize,
  IoError,
  KeyedLock,
  NotFoundError,
  UnavailableError,
} from '../util/index.js';
import { setupBaseDevice } from './base-device.js';
import { runLocked } from './keyed-locks.js';
import { checkLayerId, isScratchName, mountpointOf, scratchName } from './layer-ids.js';
import { prepareLayerRoot } from './layer-root.js';
import type {
  ApplyLayerOptions,
  CreateLayerOptions,
  LayerListing,
  LayerMetadata,
  LayerStore,
  RemoveLayerOutcome,
} from './layer-store.js';
import { LingeringMounts } from './lingering-mounts.js';
import { MOUNT_TOOLS, TREE_TOOLS } from './machine-tools.js';
import { MountCounts } from './mount-counts.js';
import { releaseAtEnd } from './release-at-end.js';
import type { FilesystemTools, TreeTools } from './tools.js';

export type GraphLog = (event: string, fields: Record<string, unknown>) => void;

export interface LayerStoreOptions {
  config: Config;
  set: DeviceSet;
  /** mount/'s programs unless given. */
  fs?: FilesystemTools;
  /** archive/'s workers unless given. */
  trees?: TreeTools;
  /** How to attach served devices; without one, mounting is refused (no daemon). */
  attacher?: Attacher;
  log?: GraphLog;
}

export class ThinLayerStore implements LayerStore {
  private readonly config: Config;
  private readonly set: DeviceSet;
  private readonly fs: FilesystemTools;
  private readonly trees: TreeTools;
  private readonly attacher: Attacher | undefined;
  private readonly log: GraphLog;
  private readonly locks = new KeyedLock<string>();
  private readonly counts = new MountCounts();
  /** Layers mounted by a daemon that is not running (seen without an attacher). */
  private readonly foreignMounts = new Set<string>();
  /** Layers whose filesystem outlived our unmount, held open until it goes. */
  private readonly lingering: LingeringMounts;

  private constructor(
    options: LayerStoreOptions,
    private readonly prefix: string,
  ) {
    this.config = options.config;
    this.set = options.set;
    this.fs = options.fs ?? MOUNT_TOOLS;
    this.trees = options.trees ?? TREE_TOOLS;
    this.attacher = options.attacher;
    this.log = options.log ?? (() => {});
    this.lingering = new LingeringMounts(this.set, this.locks, this.log);
  }

  /** Opens the store on an open device set; with an attacher, sets up the base device. */
  static async open(options: LayerStoreOptions): Promise<ThinLayerStore> {
    const store = new ThinLayerStore(options, await devicePrefix(options.config.root));
    await store.settleMounts();
    for (const name of await options.set.finishDeferredRemovals()) {
      store.log('deferred-removal-finished', { device: name });
    }
    await store.removeUnfinished();
    if (options.attacher !== undefined && options.set.lookup(BASE_DEVICE) !== undefined) {
      await store.setUpBase(options.attacher);
    }
    return store;
  }

  /**
   * Makes the base device if there is none, else checks it and grows it to a larger
   * dm.basesize: Docker's driver does this at its Init, so the plugin calls it there.
   */
  refreshBase(): Promise<void> {
    return runLocked(this.locks, [BASE_DEVICE], () =>
      this.setUpBase(this.requireAttacher('setting up the base device')),
    );
  }

  /** Creates, verifies or grows the base device (base-device.ts). */
  private setUpBase(attacher: Attacher): Promise<void> {
    const { config, set, fs } = this;
    return setupBaseDevice({
      config,
      set,
      fs,
      attacher,
      waitLingering: (name) => this.lingering.waitEnded(name, LINGER_WAIT_MS),
      log: this.log,
    });
  }

  // -------------------------------------------------------------------------------------
  // Creating and removing

  create(id: string, parent: string | undefined, o: CreateLayerOptions = {}): Promise<void> {
    checkLayerId(id);
    const origin = parent === undefined || parent === '' ? BASE_DEVICE : parent;
    return runLocked(this.locks, [id, origin], async () => {
      this.refuseExisting(id);
      const from = await this.originOf(origin);
      const size = o.size === undefined || o.size === 0 ? from.size : o.size;
      if (size < from.size) {
        throw new BadInputError(
          `Container size cannot be smaller than ${formatHumanSize(from.size as Bytes)}`,
          { hint: `give layer ${id} a size of at least ${from.size} bytes, or none` },
        );
      }
      const grows = size > from.size;
      if (grows) this.requireAttacher(`growing the filesystem of layer ${id}`);
      await this.frozenWhileMounted(origin, () =>
        this.set.createSnapshot(id, origin, {
          size,
          parent: origin === BASE_DEVICE ? '' : origin,
          initialized: !grows,
        }),
      );
      if (grows) await this.growNew(id);
    });
  }

  createReadWrite(id: string, parent: string | undefined, o?: CreateLayerOptions): Promise<void> {
    return this.create(id, parent, o);
  }

  remove(id: string): Promise<RemoveLayerOutcome> {
    return runLocked(this.locks, [id], async () => {
      const held = this.set.lookup(id);
      if (held === undefined) return 'absent';
      requireLayer(id, held);
      if (held.deleted) return 'deferred';
      this.refuseForeign(id);
      const references = this.counts.references(id);
      if (references > 0 && !this.config.storage.useDeferredDeletion) {
        throw new BusyError(`layer ${id} is mounted (${references} references)`, {
          hint:
            "unmount it first ('thinp layer unmount'), or set dm.use_deferred_deletion=true " +
            'to remove it once unmounted',
        });
      }
      const outcome = await this.set.removeDevice(id);
      if (outcome === 'removed') await removeMountpoint(this.mountpoint(id));
      this.log('layer-removed', { layer: id, outcome });
      return outcome;
    });
  }

  exists(id: string): boolean {
    return this.set.lookup(id)?.parent !== undefined;
  }

  // -------------------------------------------------------------------------------------
  // Mounts

  get(id: string, mountLabel?: string): Promise<string> {
    return runLocked(this.locks, [id], async () => {
      if (this.counts.references(id) > 0) return this.counts.acquire(id);
      requireLayer(id, this.liveLayer(id));
      this.refuseForeign(id);
      const { mounted, rootfs } = await this.mountDevice(id, id, mountLabel);
      this.counts.add(id, mounted, rootfs);
      this.log('layer-mounted', { layer: id, device: mounted.attachment.devicePath });
      return rootfs;
    });
  }

  put(id: string): Promise<void> {
    return runLocked(this.locks, [id], async () => {
      const last = this.counts.release(id);
      if (last === undefined) return;
      try {
        await this.unmountDevice(id, last.mounted);
      } catch (err) {
        this.counts.add(id, last.mounted, last.rootfs);
        throw err;
      }
      this.log('layer-unmounted', { layer: id });
    });
  }

  /** The parent layer `id` was created on; undefined for a layer on the base device. */
  parentOf(id: string): string | undefined {
    const held = this.liveLayer(id);
    requireLayer(id, held);
    return held.parent === '' ? undefined : held.parent;
  }

  /** Mount references of `id` (0 when unmounted). */
  references(id: string): number {
    return this.counts.references(id);
  }

  // -------------------------------------------------------------------------------------
  // Looking

  metadata(id: string): LayerMetadata {
    const held = this.set.get(id);
    return {
      DeviceId: String(held.id),
      DeviceSize: String(held.size),
      DeviceName: `${this.prefix}-${id}`,
    };
  }

  async status(): Promise<[string, string][]> {
    return dockerInfoPairs(await dockerInfo(this.config, this.set));
  }

  async list(): Promise<LayerListing[]> {
    const usage = new Map((await this.set.list()).map((d) => [d.name, d]));
    return this.set
      .held()
      .filter((d) => d.parent !== undefined && !isScratchName(d.name))
      .map((d) => ({
        id: d.name,
        parent: d.parent === '' ? null : (d.parent ?? null),
        deviceId: d.id,
        size: d.size,
        mappedBytes: usage.get(d.name)?.mappedBytes ?? 0,
        exclusiveBytes: usage.get(d.name)?.exclusiveBytes ?? 0,
        mounts: this.counts.references(d.name),
        deleted: d.deleted,
      }));
  }

  // -------------------------------------------------------------------------------------
  // The diff family

  applyDiff(
    id: string,
    _parent: string | undefined,
    tar: NodeJS.ReadableStream,
    o: ApplyLayerOptions = {},
  ): Promise<number> {
    return runLocked(this.locks, [id], async () => {
      requireLayer(id, this.liveLayer(id));
      this.refuseForeign(id);
      this.requireAttacher(`applying a tar to layer ${id}`);
      const references = this.counts.references(id);
      if (references > 0) {
        throw new BusyError(`layer ${id} is mounted (${references} references)`, {
          hint: "unmount it ('thinp layer unmount'), then apply",
        });
      }
      const clients = this.set.openCount(id);
      if (clients > 0) {
        throw new BusyError(`layer ${id} is open by ${clients} NBD clients`, {
          hint: 'disconnect them, then apply',
        });
      }
      const scratch = scratchName(id);
      if (this.set.lookup(scratch) !== undefined) await this.set.removeDevice(scratch);
      await this.set.createSnapshot(scratch, id);
      let size: number;
      try {
        size = await this.applyInto(scratch, id, tar, o);
      } catch (err) {
        await this.set.removeDevice(scratch).catch((e: unknown) => {
          this.log('scratch-remove-failed', { device: scratch, error: e });
        });
        throw err;
      }
      await this.set.replaceDevice(id, scratch);
      this.log('layer-applied', { layer: id, size });
      return size;
    });
  }

  async diff(id: string, parent: string | undefined): Promise<NodeJS.ReadableStream> {
    const { roots, release } = await this.mountPair(id, parent);
    let stream: NodeJS.ReadableStream;
    try {
      stream = this.trees.exportDiff(roots[0], roots[1]);
    } catch (err) {
      await release();
      throw err;
    }
    return releaseAtEnd(stream, release, (e) =>
      this.log('diff-release-failed', { layer: id, error: e }),
    );
  }

  async changes(id: string, parent: string | undefined): Promise<Change[]> {
    const { roots, release } = await this.mountPair(id, parent);
    try {
      return await this.trees.listChanges(roots[0], roots[1]);
    } finally {
      await release();
    }
  }

  async diffSize(id: string, parent: string | undefined): Promise<number> {
    const { roots, release } = await this.mountPair(id, parent);
    try {
      return await this.trees.diffSize(roots[0], roots[1]);
    } finally {
      await release();
    }
  }

  /** Stops watching lingering mounts (the daemon stops); mounts stay as they are. */
  close(): Promise<void> {
    return this.lingering.close();
  }

  /** Unmounts every layer, whatever its count (dockerd's Cleanup at its shutdown). */
  async cleanup(): Promise<void> {
    const failures: unknown[] = [];
    for (const [id, mount] of this.counts.drain()) {
      await runLocked(this.locks, [id], () => this.unmountDevice(id, mount.mounted)).catch(
        (err: unknown) => {
          this.log('cleanup-unmount-failed', { layer: id, error: err });
          failures.push(err);
        },
      );
    }
    if (failures.length > 0) throw failures[0];
  }

  // -------------------------------------------------------------------------------------
  // Internals

  /** Mounts `id` and, when given, `parent`; `release` puts both. */
  private async mountPair(
    id: string,
    parent: string | undefined,
  ): Promise<{ roots: [string, string | undefined]; release: () => Promise<void> }> {
    const root = await this.get(id);
    let parentRoot: string | undefined;
    if (parent !== undefined && parent !== '') {
      try {
        parentRoot = await this.get(parent);
      } catch (err) {
        await this.put(id);
        throw err;
      }
    }
    const release = async () => {
      try {
        await this.put(id);
      } finally {
        if (parentRoot !== undefined) await this.put(parent as string);
      }
    };
    return { roots: [root, parentRoot], release };
  }

  private async applyInto(
    scratch: string,
    id: string,
    tar: NodeJS.ReadableStream,
    o: ApplyLayerOptions,
  ): Promise<number> {
    const { mounted, rootfs } = await this.mountDevice(scratch, id);
    try {
      const options = o.onProgress === undefined ? {} : { onProgress: o.onProgress };
      return (await this.trees.applyLayer(rootfs, tar, options)).size;
    } finally {
      await this.unmountDevice(scratch, mounted);
    }
  }

  /** A new layer larger than its parent: its filesystem grows to fill it, then it is ready. */
  private async growNew(id: string): Promise<void> {
    try {
      const { mounted } = await this.mountDevice(id, id);
      try {
        await this.fs.growFilesystem(mounted);
      } finally {
        await this.unmountDevice(id, mounted);
      }
      await this.set.markInitialized(id);
    } catch (err) {
      await this.set.removeDevice(id).catch(() => undefined);
      throw err;
    }
  }

  /** Mounts device `name` at ROOT/mnt/<name>, holding it open, with rootfs/ and layer `id`'s id file. */
  private async mountDevice(
    name: string,
    id: string,
    mountLabel?: string,
  ): Promise<{ mounted: MountedFs; rootfs: string }> {
    const attacher = this.requireAttacher(`mounting layer ${id}`);
    const target = this.mountpoint(name);
    if (this.lingering.has(name)) await this.lingering.waitEnded(name, LINGER_WAIT_MS);
    await mkdir(target, { recursive: true, mode: 0o755 });
    this.set.open(name);
    let mounted: MountedFs | undefined;
    try {
      mounted = await this.fs.mountDevice(attacher, name, target, this.fsOptions(mountLabel));
      return { mounted, rootfs: await prepareLayerRoot(target, id) };
    } catch (err) {
      await mounted?.unmount().catch(() => undefined);
      await this.set.release(name);
      await removeMountpoint(target);
      throw err;
    }
  }

  /** Unmounts device `name`; its open passes to `lingering` when its filesystem lives on. */
  private async unmountDevice(name: string, mounted: MountedFs): Promise<void> {
    const lingering = await mounted.unmount();
    await removeMountpoint(this.mountpoint(name));
    if (lingering !== undefined) this.lingering.add(name, lingering);
    else await this.set.release(name);
  }

  private fsOptions(mountLabel: string | undefined): {
    type: FsType;
    options: string[];
  } {
    const type = (this.set.baseFilesystem.filesystem || this.config.storage.fs) as FsType;
    const options: string[] = [];
    if (this.config.storage.mountOpt !== undefined) options.push(this.config.storage.mountOpt);
    if (mountLabel !== undefined && mountLabel !== '') options.push(`context="${mountLabel}"`);
    return { type, options };
  }

  /**
   * Runs `fn` (a snapshot of `origin`) with `origin`'s filesystem frozen when it is
   * mounted, so the snapshot holds a clean filesystem (Docker suspends the origin).
   */
  private async frozenWhileMounted<T>(origin: string, fn: () => Promise<T>): Promise<T> {
    const mount = this.counts.get(origin);
    if (mount === undefined) return fn();
    const target = mount.mounted.target;
    await fsfreeze('-f', target);
    try {
      return await fn();
    } finally {
      await fsfreeze('-u', target);
    }
  }

  private mountpoint(name: string): string {
    return mountpointOf(this.config.layout.mountDir, name);
  }

  private requireAttacher(what: string): Attacher {
    if (this.attacher !== undefined) return this.attacher;
    throw new UnavailableError(`${what} needs the thinp daemon, which serves the devices`, {
      hint: "start it with 'thinp daemon' (or 'npm start'), then run this again",
    });
  }

  private refuseExisting(id: string): void {
    const held = this.set.lookup(id);
    if (held === undefined) return;
    throw new ExistsError(`device ${id} already exists. Deleted=${held.deleted}`, {
      hint: held.deleted
        ? 'it is removed once unmounted; wait, or choose another id'
        : "choose another id, or remove it first ('thinp layer remove')",
    });
  }

  /**
   * The device a new layer is a snapshot of: its parent layer, or the base device, which is
   * made here on first need (the caller holds the lock of `base`).
   */
  private async originOf(origin: string): Promise<HeldDevice> {
    // A base device whose making failed (mkfs refused its size, a crash) is made again.
    if (origin === BASE_DEVICE && this.set.lookup(BASE_DEVICE)?.initialized !== true) {
      await this.setUpBase(this.requireAttacher('making the base device'));
    }
    const held = this.set.lookup(origin);
    if (held === undefined) {
      throw new NotFoundError(`there is no layer ${origin} to be a parent`, {
        hint: "'thinp layer list' shows the layers",
      });
    }
    if (held.deleted) {
      throw new BusyError(`Base device ${origin} has been marked for deferred deletion`, {
        hint: 'choose another parent: this one goes once unmounted',
      });
    }
    if (origin !== BASE_DEVICE) requireLayer(origin, held);
    return held;
  }

  private liveLayer(id: string): HeldDevice {
    const held = this.set.lookup(id);
    if (held === undefined) {
      throw new NotFoundError(`there is no layer ${id}`, {
        hint: "'thinp layer list' shows the layers",
      });
    }
    if (held.deleted) {
      throw new NotFoundError(`layer ${id} is being removed (it goes once unmounted)`, {
        hint: 'choose another layer',
      });
    }
    return held;
  }

  private refuseForeign(id: string): void {
    if (!this.foreignMounts.has(id)) return;
    throw new BusyError(`layer ${id} is mounted by a thinp daemon that is not running`, {
      hint: "start the daemon ('thinp daemon'): it adopts or cleans up its mounts",
    });
  }

  /** Adopts live mounts of layers, cleans up the rest (see the module comment). */
  private async settleMounts(): Promise<void> {
    const found = await this.fs.findMounts(this.config.layout.mountStateDir);
    for (const f of found) {
      const name = f.record.exportName;
      if (this.attacher === undefined) {
        this.foreignMounts.add(name);
        continue;
      }
      const held = this.set.lookup(name);
      const adoptable =
        f.state === 'live' &&
        f.mounted !== undefined &&
        f.mounted.target === this.mountpoint(name) &&
        held?.parent !== undefined &&
        !held.deleted &&
        !isScratchName(name);
      if (adoptable && f.mounted !== undefined) {
        this.set.open(name);
        this.counts.add(name, f.mounted, `${f.mounted.target}/rootfs`);
        this.log('layer-mount-adopted', { layer: name, target: f.mounted.target });
        continue;
      }
      if (f.state === 'lingering' && f.lingering !== undefined && held !== undefined) {
        this.set.hold(name);
        this.lingering.add(name, f.lingering);
        continue;
      }
      if (
        f.state === 'live' &&
        held !== undefined &&
        held.parent === undefined &&
        name !== BASE_DEVICE &&
        !isScratchName(name)
      ) {
        // A live mount of a plain device (made through the mount layer by someone else):
        // not the store's to take down. The base device's and a scratch device's are the
        // store's own (a setup or an apply a crash cut short), and one whose device is gone
        // is no one's: those go below.
        this.log('mount-left', { device: name, target: f.mounted?.target });
        continue;
      }
      await this.dropMount(f);
    }
  }

  private async dropMount(f: Awaited<ReturnType<FilesystemTools['findMounts']>>[number]) {
    const name = f.record.exportName;
    // A scratch mount at start belongs to an apply the crash cut short, whose worker may
    // still hold files there: take it down lazily, as a stale one.
    if (f.state === 'live' && !isScratchName(name)) {
      const lingering = await (f.mounted?.unmount() ?? f.attachment.detach());
      if (lingering !== undefined && this.set.lookup(name) !== undefined) {
        this.set.hold(name);
        this.lingering.add(name, lingering);
      }
    } else {
      await this.fs.cleanupStale(f);
    }
    await removeMountpoint(this.mountpoint(name));
    this.log('mount-cleaned', { device: name, state: f.state, problems: f.problems });
  }

  /** Removes scratch devices and layers whose creation a crash cut short. */
  private async removeUnfinished(): Promise<void> {
    for (const d of this.set.held()) {
      const unfinished = d.parent !== undefined && !d.initialized;
      if (d.deleted || this.foreignMounts.has(d.name)) continue;
      if (!isScratchName(d.name) && !unfinished) continue;
      await this.set.removeDevice(d.name);
      this.log('unfinished-removed', { device: d.name });
    }
  }
}

// ---------------------------------------------------------------------------------------

function requireLayer(id: string, held: HeldDevice): void {
  if (held.parent !== undefined) return;
  throw new BadInputError(`device ${id} is not a layer`, {
    hint: "it is a plain thin device: use 'thinp device' commands on it",
  });
}

/** Removes an empty mount point; one still in use or already gone is left alone. */
/** How long a mount waits for a filesystem of the same layer that outlived its unmount. */
const LINGER_WAIT_MS = 30_000;

async function removeMountpoint(target: string): Promise<void> {
  await rmdir(target).catch(() => undefined);
}

function fsfreeze(flag: '-f' | '-u', target: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('fsfreeze', [flag, target], (err, _stdout, stderr) => {
      if (err === null) resolve();
      else {
        reject(
          new IoError(target, `fsfreeze ${flag}`, stderr.trim() || err.message, {
            hint: 'install util-linux, and check that nothing else froze this filesystem',
          }),
        );
      }
    });
  });
}
