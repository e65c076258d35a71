/**
 * Progress of long byte work (a layer tar applied or exported) on a terminal: one bar on
 * stderr, redrawn in place and cleared at the end; nothing is drawn when stderr is not a
 * terminal, so scripts and tests see only the result. The total may be unknown (a pipe).
 */

import { SingleBar } from 'cli-progress';
import { type Bytes, formatHumanSize } from '../util/index.js';
import type { CliIo } from './io.js';

export interface ByteProgress {
  /** `bytes` done so far. */
  update(bytes: number): void;
  stop(): void;
}

export function byteProgress(io: CliIo, what: string, total?: number): ByteProgress {
  const stream = io.stderr as NodeJS.WriteStream;
  if (stream.isTTY !== true) return { update: () => {}, stop: () => {} };
  const bar = new SingleBar({
    stream,
    format: total === undefined ? `${what} {done}` : `${what} |{bar}| {done} of ${human(total)}`,
    hideCursor: true,
    clearOnComplete: true,
  });
  bar.start(total ?? 1, 0, { done: human(0) });
  return {
    update: (bytes) => bar.update(total === undefined ? 0 : bytes, { done: human(bytes) }),
    stop: () => bar.stop(),
  };
}

function human(n: number): string {
  return formatHumanSize(n as Bytes);
}
