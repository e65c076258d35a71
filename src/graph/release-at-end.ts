/**
 * A stream read from a mounted layer that unmounts it before it ends: `releaseAtEnd`
 * passes `source` through and runs `release` (a put) before the output's 'end', so whoever
 * waits for the end of a diff or a saved layer knows the layer is no longer mounted (a daemon
 * stopped right after `save` would otherwise cut an unmount in progress). On an error, or a
 * reader that stops early, the output fails; the release still runs, and its own failure goes
 * to `onReleaseError`.
 */

import { pipeline, Transform } from 'node:stream';

export function releaseAtEnd(
  source: NodeJS.ReadableStream,
  release: () => Promise<void>,
  onReleaseError: (err: unknown) => void,
): NodeJS.ReadableStream {
  let released: Promise<void> | undefined;
  const releaseOnce = () => {
    released ??= release().catch((err: unknown) => {
      onReleaseError(err);
    });
    return released;
  };
  const out = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      done(null, chunk);
    },
    flush(done) {
      void releaseOnce().then(() => done());
    },
  });
  // An error, or a reader that stops early, ends the pipeline without the flush: release.
  pipeline(source, out, (err) => {
    if (err !== undefined && err !== null) void releaseOnce();
  });
  return out;
}
