/**
 * LingeringMounts: layers whose filesystem outlived the store's unmount (mount/'s
 * `Lingering`: a container's mount namespace not yet ended, a bind mount unmounted lazily).
 * The store keeps such a layer's device open until the last of those mounts goes, as a dm
 * device stays open until its last close: removing the layer meanwhile is deferred, and
 * finishes when the tracker releases the device. A daemon restarted meanwhile finds the
 * lingering attachment again and hands it here too.
 *
 * A layer is not mounted again while one of its filesystems lingers: a second mount on a
 * second loop device would be a second filesystem instance writing the same blocks.
 * `waitEnded` waits for it (a container's namespace ends soon after the container).
 *
 * Every `POLL_MS` the tracker asks each attachment whether its processes have ended; an
 * ended one is settled (its record removed) and its device released under the layer's lock.
 * Nothing here holds a lock across a wait.
 */

import type { DeviceSet } from '../driver/index.js';
import type { Lingering } from '../mount/index.js';
import { BusyError, type KeyedLock } from '../util/index.js';
import { runLocked } from './keyed-locks.js';

const POLL_MS = 1_000;
const WAIT_POLL_MS = 200;

export type LingerLog = (event: string, fields: Record<string, unknown>) => void;

export class LingeringMounts {
  private readonly held = new Map<Lingering, string>();
  private timer: NodeJS.Timeout | undefined;
  private reaping: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly set: DeviceSet,
    private readonly locks: KeyedLock<string>,
    private readonly log: LingerLog,
  ) {}

  /** Takes over one open of device `name` (already made), released when `l` ends. */
  add(name: string, l: Lingering): void {
    this.held.set(l, name);
    this.log('layer-mount-lingering', { layer: name });
    if (this.timer === undefined && !this.closed) {
      this.timer = setInterval(() => void this.reap(), POLL_MS);
      this.timer.unref();
    }
  }

  /** Whether a filesystem of device `name` lingers. */
  has(name: string): boolean {
    return [...this.held.values()].includes(name);
  }

  /**
   * Waits up to `ms` until no filesystem of `name` lingers; BusyError after. The caller may
   * hold `name`'s lock: the lingering ones of `name` are settled here, not by the timer.
   */
  async waitEnded(name: string, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      for (const [l, n] of this.held) {
        if (n === name && (await l.ended())) await this.settle(l, n);
      }
      if (!this.has(name)) return;
      if (Date.now() >= deadline) {
        throw new BusyError(
          `device ${name} is still in use outside thinp (a container, a bind mount, or a process holding its loop device open)`,
          {
            hint:
              `end what still uses it (grep ${name} /proc/*/mountinfo finds mounts; ` +
              "'losetup -a' and 'fuser -v' on the loop device find processes), then retry",
          },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
    }
  }

  /** Stops watching (daemon stop); the devices stay open until the set closes. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.reaping;
  }

  private reap(): Promise<void> {
    this.reaping ??= this.reapOnce().finally(() => {
      this.reaping = undefined;
    });
    return this.reaping;
  }

  private async reapOnce(): Promise<void> {
    for (const [l, name] of [...this.held]) {
      if (this.closed) return;
      try {
        if (!(await l.ended())) continue;
        await runLocked(this.locks, [name], () =>
          this.held.has(l) ? this.settle(l, name) : Promise.resolve(),
        );
      } catch (err) {
        this.log('layer-mount-linger-failed', { layer: name, error: err });
      }
    }
    if (this.held.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** `l` has ended: its record goes, and its open of the device (maybe the last). */
  private async settle(l: Lingering, name: string): Promise<void> {
    this.held.delete(l);
    await l.settle();
    await this.set.release(name);
    this.log('layer-mount-ended', { layer: name });
  }
}
