/**
 * The snapshot service's failures and their gRPC status codes, mapped once, the way
 * containerd's errdefs map its error classes: NotFound, AlreadyExists, InvalidArgument,
 * FailedPrecondition, Unavailable; anything else is Unknown (the message survives as text,
 * and containerd's clients test the class, not the text).
 */

import { status } from '@grpc/grpc-js';
import {
  BadInputError,
  BusyError,
  ExistsError,
  NotFoundError,
  ThinpError,
  UnavailableError,
} from '../../util/index.js';

/** The snapshot is in a state that does not allow the operation (Commit of a view...). */
export class SnapshotStateError extends ThinpError {
  readonly code = 'FAILED_PRECONDITION';
}

export function toGrpcCode(err: unknown): status {
  if (err instanceof NotFoundError) return status.NOT_FOUND;
  if (err instanceof ExistsError) return status.ALREADY_EXISTS;
  if (err instanceof SnapshotStateError || err instanceof BusyError) {
    return status.FAILED_PRECONDITION;
  }
  if (err instanceof BadInputError) return status.INVALID_ARGUMENT;
  if (err instanceof UnavailableError) return status.UNAVAILABLE;
  return status.UNKNOWN;
}

/** The text containerd shows: thinp's message and fix. */
export function grpcMessage(err: unknown): string {
  if (err instanceof ThinpError) return err.describe();
  return err instanceof Error ? err.message : String(err);
}
