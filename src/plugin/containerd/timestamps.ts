/**
 * Wall-clock time with sub-millisecond precision, as containerd's own store keeps it
 * (time.Now() in nanoseconds). Node's Date has whole milliseconds only, and a time rounded
 * down to one is up to a millisecond in the past: containerd's conformance suite reads the
 * clock before an Update and refuses an `updated` time earlier than that.
 *
 * So the clock is anchored at an edge of the wall clock's millisecond, found by watching
 * Date.now() tick over (a busy wait of at most a millisecond), and advanced from there with
 * the monotonic hrtime. It re-anchors after `ANCHOR_MS` (the monotonic clock and the wall
 * clock drift apart while NTP slews, at most 0.5 ms a second) and at once when the two
 * disagree by a millisecond or more (a clock step). It never goes backwards.
 */

export interface Timestamp {
  seconds: number;
  nanos: number;
}

const NS_PER_MS = 1_000_000n;
/** How long one anchor is trusted. */
const ANCHOR_MS = 1_000n;

let anchorWallNs = 0n;
let anchorHr = 0n;
let lastNs = 0n;

/** Anchors the clock at the moment Date.now() moves to its next millisecond. */
function anchor(): void {
  const start = Date.now();
  let wall = Date.now();
  while (wall === start) wall = Date.now();
  anchorHr = process.hrtime.bigint();
  anchorWallNs = BigInt(wall) * NS_PER_MS;
}

/** Now, in nanoseconds since the epoch; strictly increasing from call to call. */
export function nowNs(): bigint {
  const wallMs = BigInt(Date.now());
  let ns = anchorWallNs + (process.hrtime.bigint() - anchorHr);
  const stale = ns - anchorWallNs >= ANCHOR_MS * NS_PER_MS;
  if (stale || ns < wallMs * NS_PER_MS || ns >= (wallMs + 1n) * NS_PER_MS) {
    anchor();
    ns = anchorWallNs + (process.hrtime.bigint() - anchorHr);
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
