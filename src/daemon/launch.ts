/**
 * `DaemonLaunch`: what `thinp daemon` hands the daemon process, as one JSON argument: the
 * configuration it resolved (so both read the same options) and the listeners asked for.
 */

import type { Config } from '../config/index.js';
import type { ListenAddress } from '../nbd/index.js';
import { BadInputError } from '../util/index.js';

export interface DaemonLaunch {
  config: Config;
  nbd?: ListenAddress[];
  metrics?: { host: string; port: number };
  /** Serve Docker's graphdriver plugin on this socket. */
  dockerPlugin?: string;
  /** Serve containerd's snapshot service on this socket. */
  containerdSnapshotter?: string;
  /** Start, print, check one NBD greeting, stop and exit (a smoke test). */
  exitAfterStart?: boolean;
  /**
   * Stop cleanly when standard input ends: `thinp daemon` keeps a pipe to the daemon
   * open, so the daemon stops when that process dies, even by `kill -9`.
   */
  stopWhenStdinEnds?: boolean;
}

/** Reads the JSON argument; a missing or malformed one is a BadInputError. */
export function decodeLaunch(text: string | undefined): DaemonLaunch {
  let value: Partial<DaemonLaunch> | undefined;
  try {
    value = text === undefined ? undefined : (JSON.parse(text) as Partial<DaemonLaunch>);
  } catch {
    value = undefined;
  }
  if (typeof value?.config?.root !== 'string' || typeof value.config.layout !== 'object') {
    throw new BadInputError('the daemon process needs its launch description', {
      hint: "start it with 'thinp daemon'",
    });
  }
  return value as DaemonLaunch;
}

/** `unix:PATH` or `tcp:HOST:PORT`, as the command line takes them. */
export function describeAddress(a: ListenAddress): string {
  if ('path' in a) return `unix:${a.path}`;
  return a.host.includes(':') ? `tcp:[${a.host}]:${a.port}` : `tcp:${a.host}:${a.port}`;
}
