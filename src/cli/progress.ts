/**
 * Progress of long image work (load, save) on a terminal: one bar on stderr, redrawn in
 * place, cleared when the work ends. Nothing is drawn when stderr is not a terminal, so
 * scripts and tests see only the result.
 */

import { SingleBar } from 'cli-progress';
import type { ImageProgress } from '../graph/index.js';
import { type Bytes, formatHumanSize } from '../util/index.js';
import type { CliIo } from './io.js';

export interface ProgressBar {
  update(p: ImageProgress): void;
  stop(): void;
}

/** A bar on `io.stderr` when it is a terminal, else one that draws nothing. */
export function progressBar(io: CliIo, what: string): ProgressBar {
  const stream = io.stderr as NodeJS.WriteStream;
  if (stream.isTTY !== true) return { update: () => {}, stop: () => {} };
  const bar = new SingleBar({
    stream,
    format: `${what} {phase} |{bar}| {done} of {all}`,
    hideCursor: true,
    clearOnComplete: true,
  });
  let started = false;
  return {
    update(p) {
      const total = p.phase === 'apply' ? p.total : Math.max(p.bytes, 1);
      const payload = {
        phase: p.phase === 'apply' ? `layer ${p.layer}/${p.layers}` : p.phase,
        done: formatHumanSize(p.bytes as Bytes),
        all: p.phase === 'apply' ? formatHumanSize(p.total as Bytes) : '?',
      };
      if (!started) bar.start(total, p.bytes, payload);
      started = true;
      bar.setTotal(total);
      bar.update(p.bytes, payload);
    },
    stop: () => bar.stop(),
  };
}
