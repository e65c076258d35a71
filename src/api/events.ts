/**
 * `EventHub`: the pool's and the device set's events as one stream of JSON objects, which
 * `GET /events` sends as newline-delimited JSON. Every event has `type` and `time` (ISO
 * 8601); subscribers get the events published after they subscribed, in order.
 */

import type { AutoextendEvent } from '../driver/index.js';
import type { ThinPool } from '../pool/index.js';

export type ThinpEvent =
  | { type: 'lowWater'; freeBlocks: number; totalBlocks: number }
  | { type: 'outOfSpace'; space: 'data' | 'metadata' }
  | { type: 'mode'; mode: string }
  | { type: 'deviceCreated'; name: string; origin?: string }
  | { type: 'deviceRemoved'; name: string; outcome: 'removed' | 'deferred' }
  | { type: 'poolResized'; dataBlocks: number; metadataBlocks: number }
  | { type: 'deviceAdded'; path: string; dataBlocks: number }
  | AutoextendEvent;

export type StampedEvent = ThinpEvent & { time: string };

export type EventListener = (event: StampedEvent) => void;

export class EventHub {
  private readonly listeners = new Set<EventListener>();

  /** Sends `event` to every subscriber; a throwing subscriber does not stop the others. */
  publish(event: ThinpEvent): void {
    const stamped: StampedEvent = { ...event, time: new Date().toISOString() };
    for (const listener of this.listeners) {
      try {
        listener(stamped);
      } catch {
        // A subscriber's failure is its own.
      }
    }
  }

  /** Calls `listener` for every later event until the returned function is called. */
  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get subscriberCount(): number {
    return this.listeners.size;
  }

  /** Forwards the pool's lowWater, outOfSpace and mode events; returns the detacher. */
  watchPool(pool: ThinPool): () => void {
    const onLow = (e: { freeBlocks: number; totalBlocks: number }) =>
      this.publish({ type: 'lowWater', ...e });
    const onOut = (e: { space: 'data' | 'metadata' }) =>
      this.publish({ type: 'outOfSpace', space: e.space });
    const onMode = (mode: string) => this.publish({ type: 'mode', mode });
    pool.on('lowWater', onLow);
    pool.on('outOfSpace', onOut);
    pool.on('mode', onMode);
    return () => {
      pool.off('lowWater', onLow);
      pool.off('outOfSpace', onOut);
      pool.off('mode', onMode);
    };
  }
}
