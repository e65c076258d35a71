/**
 * The one mapping of the error taxonomy to HTTP statuses at the control API's boundary (as
 * containerd's errhttp.ToHTTP). Anything that is not a `ThinpError` is a 500.
 */

import {
  BadInputError,
  BusyError,
  ExistsError,
  InternalError,
  MetadataCorruptError,
  NoSpaceError,
  NotFoundError,
  ReadOnlyError,
  UnavailableError,
} from '../util/index.js';

/** The status that tells an HTTP client what kind of failure `err` is. */
export function toHttpStatus(err: unknown): number {
  if (err instanceof BadInputError) return 400;
  if (err instanceof NotFoundError) return 404;
  if (err instanceof ExistsError || err instanceof BusyError) return 409;
  if (err instanceof NoSpaceError) return 507;
  if (err instanceof ReadOnlyError) return 409;
  if (err instanceof UnavailableError) return 503;
  if (err instanceof MetadataCorruptError || err instanceof InternalError) return 500;
  return 500;
}
