/**
 * `SnapshotService`: containerd's snapshotter semantics over thin devices. Each snapshot,
 * active, view or committed, is its own thin device (as containerd's devmapper snapshotter
 * does it); the catalog keeps what containerd sees. The rules (DOCKER.md §3.1):
 * - keys and names share one namespace; Prepare (read-write) and View (read-only) make an
 *   active snapshot, Commit turns an active one into a committed one under a new name and
 *   removes the key; only committed snapshots can be parents; a snapshot with children
 *   cannot be removed; Mounts is for active snapshots and views only;
 * - Commit works while the active snapshot is mounted: the devices freeze its filesystem,
 *   take the snapshot and thaw it, the way a dm suspend does;
 * - Update changes labels only (by field mask), Created never changes, Updated is now.
 *
 * Errors are `NotFoundError`, `ExistsError`, `BadInputError` (invalid argument) and
 * `SnapshotStateError` (failed precondition); errors.ts maps them to gRPC codes. Every check
 * runs before any change, so a refused request changes nothing.
 *
 * Changes run one at a time (one mutex); reads (Stat, List, Usage, and Mounts of a mounted
 * snapshot) do not wait for them. Mounts of a snapshot that is not mounted mounts it: a
 * change.
 * A change writes its intent to the catalog first (`creating`, `removing`), and `open()`
 * settles what a crash left half done.
 */

import { BadInputError, ExistsError, Mutex, NotFoundError } from '../../util/index.js';
import type { SnapshotCatalog, SnapshotKind, SnapshotRecord } from './catalog.js';
import { SnapshotStateError } from './errors.js';
import { type FieldLookup, matchesAny, parseFilters } from './filters.js';
import { now, type Timestamp } from './timestamps.js';

/** A mount as containerd's mount.All takes it. */
export interface SnapshotMount {
  type: string;
  source: string;
  options: string[];
}

/** The thin devices behind the snapshots. */
export interface SnapshotDevices {
  /** Makes `device`: a snapshot of `parent`'s device, or an empty filesystem. */
  create(device: string, parent: string | undefined): Promise<void>;
  /** The mounts that show `device`, read-only when asked (mounting it if need be). */
  mounts(device: string, readOnly: boolean): Promise<SnapshotMount[]>;
  /**
   * The mounts of `device` when they can be given without a change (it is mounted already),
   * else undefined. Optional: without it every Mounts call is a change.
   */
  mountsNow?(device: string, readOnly: boolean): SnapshotMount[] | undefined;
  /** Makes `committed` a point-in-time snapshot of `active`, frozen if mounted. */
  snapshot(active: string, committed: string): Promise<void>;
  /** Removes `device` (deferred while something still holds it); an absent device is fine. */
  remove(device: string): Promise<void>;
  /** Bytes the device maps that its parent's device does not (containerd's own usage). */
  usage(device: string, parent: string | undefined): Promise<{ size: number; inodes: number }>;
  /** Finishes deferred removals. */
  cleanup(): Promise<void>;
}

/** What Stat, List and Update give back. */
export interface SnapshotInfo {
  name: string;
  parent: string;
  kind: SnapshotKind;
  created: Timestamp;
  updated: Timestamp;
  labels: Record<string, string>;
}

export class SnapshotService {
  private readonly changes = new Mutex();

  private constructor(
    private readonly catalog: SnapshotCatalog,
    private readonly devices: SnapshotDevices,
  ) {}

  /** Opens the service and settles what a crash left half done. */
  static async open(catalog: SnapshotCatalog, devices: SnapshotDevices): Promise<SnapshotService> {
    const service = new SnapshotService(catalog, devices);
    for (const r of catalog.unsettled()) {
      await devices.remove(r.device);
      await catalog.change([], [r.name]);
    }
    return service;
  }

  prepare(key: string, parent: string, labels: Record<string, string>): Promise<SnapshotMount[]> {
    return this.createActive('active', key, parent, labels);
  }

  view(key: string, parent: string, labels: Record<string, string>): Promise<SnapshotMount[]> {
    return this.createActive('view', key, parent, labels);
  }

  /**
   * The mounts of an active snapshot or a view. Read without the change lock while its
   * device is mounted (the answer is a path); otherwise (a restarted daemon that could not
   * adopt the mount) mounting it is a change, serialised with Remove and Commit, so that a
   * snapshot being removed is never mounted again behind the removal's back.
   */
  async mounts(key: string): Promise<SnapshotMount[]> {
    const r = this.requireMountable(key);
    const now = this.devices.mountsNow?.(r.device, r.kind === 'view');
    if (now !== undefined) return now;
    return this.changes.run(async () => {
      const current = this.requireMountable(key);
      return this.devices.mounts(current.device, current.kind === 'view');
    });
  }

  /** `parent`, when given (newer containerd), must be the one the key was prepared from. */
  commit(name: string, key: string, labels: Record<string, string>, parent = ''): Promise<void> {
    return this.changes.run(async () => {
      checkName('name', name);
      const active = this.require(key);
      if (parent !== '' && parent !== active.parent) {
        throw new BadInputError(
          `snapshot ${key} was prepared from ${JSON.stringify(active.parent)}, not ${parent}`,
          {
            hint: 'thinp cannot rebase a snapshot onto another parent; commit without one',
          },
        );
      }
      if (active.kind !== 'active') {
        throw new SnapshotStateError(
          `snapshot ${key} is a ${active.kind}: only an active snapshot can be committed`,
          {
            hint: 'prepare a snapshot (not a view) to commit changes',
          },
        );
      }
      if (this.catalog.taken(name)) {
        throw new ExistsError(`snapshot ${name}: already exists`, {
          hint: 'commit under another name',
        });
      }
      const at = now();
      const committed: SnapshotRecord = {
        name,
        parent: active.parent,
        kind: 'committed',
        device: this.catalog.allocateDevice(),
        created: at,
        updated: at,
        labels: withoutEmpty(labels),
        state: 'creating',
      };
      await this.catalog.change([committed]);
      try {
        await this.devices.snapshot(active.device, committed.device);
      } catch (err) {
        await this.undoCreate(committed);
        throw err;
      }
      await this.catalog.change([
        { ...committed, state: 'ready' },
        { ...active, state: 'removing' },
      ]);
      await this.devices.remove(active.device);
      await this.catalog.change([], [active.name]);
    });
  }

  remove(key: string): Promise<void> {
    return this.changes.run(async () => {
      const r = this.require(key);
      if (this.catalog.hasChildren(key)) {
        throw new SnapshotStateError(
          `cannot remove snapshot with child: ${key} is the parent of another snapshot`,
          {
            hint: 'remove its children first',
          },
        );
      }
      await this.catalog.change([{ ...r, state: 'removing' }]);
      await this.devices.remove(r.device);
      await this.catalog.change([], [key]);
    });
  }

  stat(key: string): SnapshotInfo {
    return infoOf(this.require(key));
  }

  /**
   * Changes labels: no paths replaces them all; `labels` replaces them all; `labels.K` sets
   * or (with an empty value) clears one key. Any other path is refused.
   */
  update(info: SnapshotInfo, paths: readonly string[]): Promise<SnapshotInfo> {
    return this.changes.run(async () => {
      const r = this.require(info.name);
      let labels: Record<string, string>;
      if (paths.length === 0) labels = withoutEmpty(info.labels);
      else {
        labels = { ...r.labels };
        for (const p of paths) labels = applyPath(p, labels, info.labels);
      }
      const updated = { ...r, labels: withoutEmpty(labels), updated: now() };
      await this.catalog.change([updated]);
      return infoOf(updated);
    });
  }

  /** Every snapshot that matches one of the filters (all when none). */
  list(filters: readonly string[]): SnapshotInfo[] {
    const parsed = parseFilters(filters);
    return this.catalog
      .ready()
      .filter((r) => matchesAny(parsed, lookupIn(r)))
      .map(infoOf);
  }

  async usage(key: string): Promise<{ size: number; inodes: number }> {
    const r = this.require(key);
    const parent = r.parent === '' ? undefined : this.catalog.get(r.parent)?.device;
    return this.devices.usage(r.device, parent);
  }

  cleanup(): Promise<void> {
    return this.changes.run(() => this.devices.cleanup());
  }

  private createActive(
    kind: 'active' | 'view',
    key: string,
    parent: string,
    labels: Record<string, string>,
  ): Promise<SnapshotMount[]> {
    return this.changes.run(async () => {
      checkName('key', key);
      if (this.catalog.taken(key)) {
        throw new ExistsError(`snapshot ${key}: already exists`, { hint: 'use another key' });
      }
      let parentDevice: string | undefined;
      if (parent !== '') {
        const p = this.catalog.get(parent);
        if (p === undefined) {
          throw new NotFoundError(`parent snapshot ${parent} does not exist`, {
            hint: 'commit the parent first, or check its name',
          });
        }
        if (p.kind !== 'committed') {
          throw new BadInputError(`parent snapshot ${parent} is not committed`, {
            hint: 'commit it first: only committed snapshots can be parents',
          });
        }
        parentDevice = p.device;
      }
      const at = now();
      const record: SnapshotRecord = {
        name: key,
        parent,
        kind,
        device: this.catalog.allocateDevice(),
        created: at,
        updated: at,
        labels: withoutEmpty(labels),
        state: 'creating',
      };
      await this.catalog.change([record]);
      try {
        await this.devices.create(record.device, parentDevice);
        const mounts = await this.devices.mounts(record.device, kind === 'view');
        await this.catalog.change([{ ...record, state: 'ready' }]);
        return mounts;
      } catch (err) {
        await this.undoCreate(record);
        throw err;
      }
    });
  }

  private async undoCreate(record: SnapshotRecord): Promise<void> {
    await this.devices.remove(record.device).catch(() => undefined);
    await this.catalog.change([], [record.name]);
  }

  private requireMountable(key: string): SnapshotRecord {
    const r = this.require(key);
    if (r.kind === 'committed') {
      throw new SnapshotStateError(`snapshot ${key} is committed: it has no mounts`, {
        hint: 'prepare or view a snapshot on top of it and mount that',
      });
    }
    return r;
  }

  private require(key: string): SnapshotRecord {
    const r = this.catalog.get(key);
    if (r === undefined) {
      throw new NotFoundError(`snapshot ${key} does not exist`, {
        hint: "list the snapshots with 'ctr snapshots ls'",
      });
    }
    return r;
  }
}

function checkName(what: string, name: string): void {
  if (name === '') {
    throw new BadInputError(`the snapshot ${what} is empty`, { hint: `give a ${what}` });
  }
}

function infoOf(r: SnapshotRecord): SnapshotInfo {
  return {
    name: r.name,
    parent: r.parent,
    kind: r.kind,
    created: r.created,
    updated: r.updated,
    labels: { ...r.labels },
  };
}

function withoutEmpty(labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== ''));
}

function applyPath(
  path: string,
  labels: Record<string, string>,
  given: Record<string, string>,
): Record<string, string> {
  if (path === 'labels') return { ...given };
  if (path.startsWith('labels.')) {
    const key = path.slice('labels.'.length);
    const next = { ...labels };
    const value = given[key];
    if (value === undefined || value === '') delete next[key];
    else next[key] = value;
    return next;
  }
  throw new BadInputError(`cannot update ${JSON.stringify(path)} of a snapshot`, {
    hint: 'only labels (or labels.KEY) can be updated; name, parent and kind never change',
  });
}

function lookupIn(r: SnapshotRecord): FieldLookup {
  return (fieldpath) => {
    const [field, ...rest] = fieldpath;
    switch (field) {
      case 'name':
        return rest.length === 0 ? r.name : undefined;
      case 'parent':
        return rest.length === 0 ? r.parent : undefined;
      case 'kind':
        return rest.length === 0 ? r.kind : undefined;
      case 'labels':
        return rest.length === 0 ? undefined : r.labels[rest.join('.')];
      default:
        return undefined;
    }
  };
}
