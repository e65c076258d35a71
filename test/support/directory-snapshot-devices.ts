/**
 * `DirectorySnapshotDevices`: snapshot "devices" that are plain directories, copied whole
 * (`cp -a`) to make a snapshot, the way containerd's native snapshotter works. It lets the
 * containerd service layer (catalog, semantics, gRPC, error codes) be run through
 * containerd's conformance suite on its own; the thin-device implementation is tested the
 * same way in test/peers/containerd-snapshotter.test.ts.
 */

import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { SnapshotDevices, SnapshotMount } from '../../src/plugin/index.js';

const run = promisify(execFile);

export class DirectorySnapshotDevices implements SnapshotDevices {
  constructor(readonly dir: string) {}

  async create(device: string, parent: string | undefined): Promise<void> {
    const target = this.path(device);
    if (parent === undefined) await mkdir(target, { recursive: true, mode: 0o755 });
    else await run('cp', ['-a', '--', this.path(parent), target]);
  }

  async mounts(device: string, readOnly: boolean): Promise<SnapshotMount[]> {
    return [
      { type: 'bind', source: this.path(device), options: ['rbind', readOnly ? 'ro' : 'rw'] },
    ];
  }

  async snapshot(active: string, committed: string): Promise<void> {
    await run('cp', ['-a', '--', this.path(active), this.path(committed)]);
  }

  async remove(device: string): Promise<void> {
    await rm(this.path(device), { recursive: true, force: true });
  }

  async usage(device: string): Promise<{ size: number; inodes: number }> {
    const { stdout } = await run('du', ['-sb', this.path(device)]);
    return { size: Number.parseInt(stdout, 10), inodes: 0 };
  }

  async cleanup(): Promise<void> {}

  private path(device: string): string {
    return path.join(this.dir, device);
  }
}
