/**
 * The snapshot catalog: what containerd knows as snapshots (key or name, parent, kind,
 * labels, timestamps) and the thin device behind each, kept in one JSON file
 * (ROOT/containerd/snapshots.json) rewritten atomically on every change.
 *
 * Consistency with the pool: a record is written with `state: 'creating'` before its device
 * is made and `'removing'` before its device is removed; only `'ready'` records are visible.
 * At open, `unsettled()` lists the others so the service can finish or undo them (remove
 * the device, drop the record): a crash between the pool change and the record change never
 * leaves a snapshot that "already exists" but cannot be used.
 *
 * The catalog does no locking: the service serialises its changes.
 */

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { readStateFile, writeStateFile } from '../../driver/index.js';
import { BadInputError } from '../../util/index.js';
import type { Timestamp } from './timestamps.js';

export type SnapshotKind = 'view' | 'active' | 'committed';
export type RecordState = 'creating' | 'ready' | 'removing';

export interface SnapshotRecord {
  name: string;
  parent: string;
  kind: SnapshotKind;
  /** The thin device that holds it. */
  device: string;
  created: Timestamp;
  updated: Timestamp;
  labels: Record<string, string>;
  state: RecordState;
}

interface CatalogFile {
  version: 1;
  nextDevice: number;
  snapshots: SnapshotRecord[];
}

export const CATALOG_FILE = 'snapshots.json';

/** Writes the catalog's file whole (atomically): the state file's writer unless given. */
export type CatalogWriter = (file: string, data: unknown) => Promise<void>;

export class SnapshotCatalog {
  private records = new Map<string, SnapshotRecord>();

  private constructor(
    readonly file: string,
    private nextDevice: number,
    private readonly write: CatalogWriter,
  ) {}

  /** Opens (or starts) the catalog in `dir`. */
  static async open(
    dir: string,
    options: { write?: CatalogWriter } = {},
  ): Promise<SnapshotCatalog> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, CATALOG_FILE);
    const data = (await readStateFile(file)) as CatalogFile | undefined;
    if (data !== undefined && (data.version !== 1 || !Array.isArray(data.snapshots))) {
      throw new BadInputError(`${file} is not a snapshot catalog of this version of thinp`, {
        hint: 'restore it from a backup, or move it away to start with no snapshots',
      });
    }
    const catalog = new SnapshotCatalog(
      file,
      data?.nextDevice ?? 1,
      options.write ?? writeStateFile,
    );
    for (const r of data?.snapshots ?? []) catalog.records.set(r.name, r);
    return catalog;
  }

  /** A visible (ready) snapshot by key or name. */
  get(name: string): SnapshotRecord | undefined {
    const r = this.records.get(name);
    return r?.state === 'ready' ? r : undefined;
  }

  /** Whether the name is taken, by a visible snapshot or one being made or removed. */
  taken(name: string): boolean {
    return this.records.has(name);
  }

  ready(): SnapshotRecord[] {
    return [...this.records.values()].filter((r) => r.state === 'ready');
  }

  /** Records a crash left half made or half removed. */
  unsettled(): SnapshotRecord[] {
    return [...this.records.values()].filter((r) => r.state !== 'ready');
  }

  hasChildren(name: string): boolean {
    for (const r of this.records.values()) if (r.parent === name) return true;
    return false;
  }

  /** A device name no record has used. */
  allocateDevice(): string {
    return `containerd-snapshot-${this.nextDevice++}`;
  }

  /**
   * Applies the changes (puts, then deletes) and writes the file once; when the write fails
   * the catalog in memory stays as it was.
   */
  async change(puts: readonly SnapshotRecord[], deletes: readonly string[] = []): Promise<void> {
    const next = new Map(this.records);
    for (const r of puts) next.set(r.name, r);
    for (const name of deletes) next.delete(name);
    const data: CatalogFile = {
      version: 1,
      nextDevice: this.nextDevice,
      snapshots: [...next.values()],
    };
    await this.write(this.file, data);
    this.records = next;
  }
}
