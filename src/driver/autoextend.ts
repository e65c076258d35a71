/**
 * Autoextend, built in (LVM leaves it to dmeventd, which users find off or not running):
 * once the data or metadata space is dm.thinp_autoextend_threshold percent used, grow it by
 * dm.thinp_autoextend_percent of its size, into whatever the mode has to give (grow-room.ts,
 * or free extents in direct-lvm mode). Each growth is an `autoextend` event; when nothing
 * is left to grow into, one `autoextendExhausted` warning per space (until it can grow
 * again), and the state that `thinp info` and the metrics show, before writes meet ENOSPC.
 * A threshold of 100 turns it off, as in lvm.conf.
 *
 * `check()` is cheap while below the threshold, so the daemon calls it on the pool's
 * low-water event and after every commit. Checks never overlap: one that comes while
 * another runs makes that one look again when it ends.
 */

import type { DeviceSet } from './device-set.js';

export type Space = 'data' | 'metadata';

export type AutoextendEvent =
  | { type: 'autoextend'; space: Space; fromBytes: number; toBytes: number }
  | { type: 'autoextendExhausted'; space: Space; usedPercent: number };

export interface AutoextendState {
  enabled: boolean;
  threshold: number;
  percent: number;
  /** Growths so far, per space, since the daemon started. */
  extensions: Record<Space, number>;
  /** Spaces past the threshold with nothing left to grow into. */
  exhausted: Record<Space, boolean>;
}

export class Autoextender {
  readonly state: AutoextendState;
  private running: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly set: DeviceSet,
    private readonly notify: (event: AutoextendEvent) => void,
    private readonly onError: (err: unknown) => void = () => {},
  ) {
    const { autoextendThreshold: threshold, autoextendPercent: percent } = set.config.storage;
    this.state = {
      enabled: threshold < 100,
      threshold,
      percent,
      extensions: { data: 0, metadata: 0 },
      exhausted: { data: false, metadata: false },
    };
  }

  /** Grows each space that is past the threshold; resolves once done. Never rejects. */
  check(): Promise<void> {
    if (!this.state.enabled) return Promise.resolve();
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    if (!this.due('data') && !this.due('metadata')) return Promise.resolve();
    this.running = (async () => {
      try {
        do {
          this.again = false;
          for (const space of ['data', 'metadata'] as const) await this.grow(space);
        } while (this.again);
      } catch (err) {
        this.onError(err);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Resolves once no check runs (it starts none). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  /** Whether `space` is past the threshold; clears `exhausted` once it no longer is. */
  private due(space: Space): boolean {
    const { used, total } = this.usage(space);
    const past = used * 100 >= total * this.state.threshold;
    if (!past) this.state.exhausted[space] = false;
    return past;
  }

  private async grow(space: Space): Promise<void> {
    if (!this.due(space)) return;
    const { used, total } = this.usage(space);
    const wanted = Math.ceil((total * this.state.percent) / 100);
    const added = await this.set.extendSpace(space, wanted);
    if (added > 0) {
      this.state.extensions[space]++;
      this.state.exhausted[space] = false;
      this.notify({ type: 'autoextend', space, fromBytes: total, toBytes: total + added });
      return;
    }
    if (this.state.exhausted[space]) return;
    this.state.exhausted[space] = true;
    this.notify({
      type: 'autoextendExhausted',
      space,
      usedPercent: Math.round((used * 1000) / total) / 10,
    });
  }

  /** Used and total bytes of `space`. */
  private usage(space: Space): { used: number; total: number } {
    const s = this.set.status();
    if (space === 'data') {
      return {
        used: s.data.usedBlocks * s.data.blockSize,
        total: s.data.totalBlocks * s.data.blockSize,
      };
    }
    return { used: s.metadata.usedBlocks * 4096, total: s.metadata.totalBlocks * 4096 };
  }
}
