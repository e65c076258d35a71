/** The errno code of a failed fs call, and the IoError that names device, operation and range. */

import { IoError } from '../util/index.js';

export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** An `IoError` for a failed fs call, its message carrying the errno and the range. */
export function fsError(
  device: string,
  op: string,
  err: unknown,
  offset?: number,
  length?: number,
): IoError {
  const code = errnoCode(err);
  const message = err instanceof Error ? err.message : String(err);
  const reason = code === undefined || message.startsWith(code) ? message : `${code}: ${message}`;
  const range = offset === undefined ? '' : ` (${length} bytes at offset ${offset})`;
  return new IoError(device, op, `${reason}${range}`, { cause: err });
}
