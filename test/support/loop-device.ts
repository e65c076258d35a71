/**
 * Loop devices over sparse files, for tests of direct mode: `attachLoop` makes the file and
 * attaches it with `losetup --find --show`, `detachLoop` detaches it. Tests detach every
 * loop device they attach in `after`/`finally`, whatever failed (`LoopDevices.detachAll`):
 * loop devices are shared by the whole machine.
 */

import { truncate, writeFile } from 'node:fs/promises';
import { requireTool, runToolOk } from './daemon.js';

export const losetup = () => requireTool('losetup', 'mount');

/** Makes `file` a sparse file of `size` bytes and attaches it; returns /dev/loopN. */
export async function attachLoop(file: string, size: number): Promise<string> {
  await writeFile(file, '');
  await truncate(file, size);
  const loop = (await runToolOk(await losetup(), ['--find', '--show', file])).trim();
  if (!/^\/dev\/loop\d+$/.test(loop)) throw new Error(`losetup printed ${loop}`);
  return loop;
}

/** Attaches an existing `file`; returns /dev/loopN. */
export async function reattachLoop(file: string): Promise<string> {
  return (await runToolOk(await losetup(), ['--find', '--show', file])).trim();
}

export async function detachLoop(loop: string): Promise<void> {
  await runToolOk(await losetup(), ['-d', loop]);
}

/** Re-reads the size of the file behind `loop` (after the file grew). */
export async function refreshLoop(loop: string): Promise<void> {
  await runToolOk(await losetup(), ['-c', loop]);
}

/** The loop devices a test attached, detached together at its end. */
export class LoopDevices {
  private readonly attached = new Set<string>();

  async attach(file: string, size: number): Promise<string> {
    const loop = await attachLoop(file, size);
    this.attached.add(loop);
    return loop;
  }

  async reattach(file: string): Promise<string> {
    const loop = await reattachLoop(file);
    this.attached.add(loop);
    return loop;
  }

  async detach(loop: string): Promise<void> {
    this.attached.delete(loop);
    await detachLoop(loop);
  }

  /** Detaches every device still attached; the first failure is thrown after trying all. */
  async detachAll(): Promise<void> {
    const errors: unknown[] = [];
    for (const loop of [...this.attached]) {
      await this.detach(loop).catch((err: unknown) => errors.push(err));
    }
    if (errors.length > 0) throw errors[0];
  }
}
