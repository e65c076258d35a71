/** Parsers for option arguments: a bad value is a usage error that says what to write. */

import { InvalidArgumentError } from 'commander';
import { BadInputError, type Bytes, parseSize } from '../util/index.js';

export function sizeArgument(value: string): Bytes {
  try {
    return parseSize(value);
  } catch (error) {
    if (error instanceof BadInputError) throw new InvalidArgumentError(error.describe());
    throw error;
  }
}

/** Repeatable options collect into a list. */
export function collect(value: string, previous: readonly string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export type ListenAddress =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number };

/** `unix:PATH` or `tcp:HOST:PORT` (an IPv6 host in brackets: `tcp:[::1]:10809`). */
export function listenAddress(value: string): ListenAddress {
  if (value.startsWith('unix:') && value.length > 'unix:'.length) {
    return { kind: 'unix', path: value.slice('unix:'.length) };
  }
  const tcp = /^tcp:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(value);
  const port = Number(tcp?.[2]);
  if (tcp?.[1] === undefined || port < 1 || port > 65535) {
    throw new InvalidArgumentError(
      `'${value}' is not an address; give unix:PATH or tcp:HOST:PORT with a port from 1 to 65535`,
    );
  }
  return { kind: 'tcp', host: tcp[1].replace(/^\[(.*)\]$/, '$1'), port };
}

/** A whole number from 0 to 2^53 - 1, written in decimal. */
export function naturalArgument(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError(`'${value}' is not a whole number; give digits only, e.g. 128`);
  }
  return n;
}
