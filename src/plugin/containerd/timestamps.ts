/**
 * Wall-clock time with sub-millisecond precision, as containerd's own store keeps it
 * (time.Now() in nanoseconds). Node's Date has milliseconds only, so the clock is anchored to
 * Date.now() and advanced with the monotonic hrtime; it re-anchors whenever the two drift
 * apart by a millisecond or more (a clock step or slew), and never goes backwards.
 */

export interface Timestamp {
  seconds: number;
  nanos: number;
}

const NS_PER_MS = 1_000_000n;

let anchorWallNs = BigInt(Date.now()) * NS_PER_MS;
let anchorHr = process.hrtime.bigint();
let lastNs = 0n;

/** Now, in nanoseconds since the epoch. */
export function nowNs(): bigint {
  const wallMs = BigInt(Date.now());
  let ns = anchorWallNs + (process.hrtime.bigint() - anchorHr);
  if (ns < wallMs * NS_PER_MS || ns >= (wallMs + 1n) * NS_PER_MS) {
    anchorWallNs = wallMs * NS_PER_MS;
    anchorHr = process.hrtime.bigint();
    ns = anchorWallNs;
  }
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  return ns;
}

export function now(): Timestamp {
  return fromNs(nowNs());
}

export function fromNs(ns: bigint): Timestamp {
  return { seconds: Number(ns / 1_000_000_000n), nanos: Number(ns % 1_000_000_000n) };
}
