/**
 * The error taxonomy: one class per kind of failure, each with a stable `code`, a
 * message that names the problem and a `hint` that names the fix. Boundaries (CLI exit
 * codes, HTTP statuses, NBD errnos) map these classes once, in one function each.
 *
 * Messages never start with "thinp:"; the CLI adds that prefix when it prints them.
 */

export interface ErrorDetails {
  /** What the user can do about it, e.g. "grow it with 'thinp pool resize'". */
  hint?: string;
  cause?: unknown;
}

export abstract class ThinpError extends Error {
  abstract readonly code: string;
  readonly hint: string | undefined;

  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.hint = details.hint;
  }

  /** The message and the hint as one line: "what is wrong; how to fix it". */
  describe(): string {
    return this.hint === undefined ? this.message : `${this.message}; ${this.hint}`;
  }
}

/** Input from the user (arguments, files, packets) that is malformed or out of range. */
export class BadInputError extends ThinpError {
  readonly code: string = 'BAD_INPUT';
}

/** The command line itself is wrong: unknown command or option, missing argument. */
export class UsageError extends BadInputError {
  override readonly code = 'USAGE';
}

/** A configuration value or file is wrong; `source` says where it came from. */
export class ConfigError extends BadInputError {
  override readonly code = 'CONFIG';
  readonly source: string | undefined;

  constructor(message: string, details: ErrorDetails & { source?: string } = {}) {
    super(details.source === undefined ? message : `${details.source}: ${message}`, details);
    this.source = details.source;
  }
}

export class NotFoundError extends ThinpError {
  readonly code = 'NOT_FOUND';
}

export class ExistsError extends ThinpError {
  readonly code = 'EXISTS';
}

/** The object is in use (open connection, mount) and the operation cannot wait. */
export class BusyError extends ThinpError {
  readonly code = 'BUSY';
}

/** The request is valid but this build of thinp cannot carry it out. */
export class UnavailableError extends ThinpError {
  readonly code = 'UNAVAILABLE';
}

/** A broken invariant inside thinp: a bug, never the user's doing. */
export class InternalError extends ThinpError {
  readonly code = 'INTERNAL';
}

/** The pool (data or metadata space) has no room for the operation. */
export class NoSpaceError extends ThinpError {
  readonly code = 'NO_SPACE';
  readonly space: 'data' | 'metadata';

  constructor(space: 'data' | 'metadata', message: string, details: ErrorDetails = {}) {
    super(message, details);
    this.space = space;
  }
}

/** A read, write or flush of a device failed. */
export class IoError extends ThinpError {
  readonly code = 'IO';
  readonly device: string;
  readonly op: string;

  constructor(device: string, op: string, message: string, details: ErrorDetails = {}) {
    super(`${device}: ${op} failed: ${message}`, details);
    this.device = device;
    this.op = op;
  }
}

/**
 * The metadata device holds something the format does not allow. `block` names the metadata
 * block where the damage was found and `structure` what it was read as ("btree node",
 * "superblock", ...), so the message always says where to look.
 */
export class MetadataCorruptError extends ThinpError {
  readonly code: string = 'METADATA_CORRUPT';
  readonly block: number | undefined;
  readonly structure: string;

  constructor(
    structure: string,
    block: number | undefined,
    problem: string,
    details: ErrorDetails = {},
  ) {
    super(`${structure}${block === undefined ? '' : ` (metadata block ${block})`}: ${problem}`, {
      hint: "run 'thinp check' to see every problem, then restore from a dump or repair it",
      ...details,
    });
    this.block = block;
    this.structure = structure;
  }
}

/** A block's checksum does not match its contents. */
export class ChecksumError extends MetadataCorruptError {
  override readonly code = 'CHECKSUM';
}

/** A block's `blocknr` field is not the location it was read from. */
export class BadBlockError extends MetadataCorruptError {
  override readonly code = 'BAD_BLOCK';
}

/** The pool (or device) only allows reads now, after a failure or by configuration. */
export class ReadOnlyError extends ThinpError {
  readonly code = 'READ_ONLY';
}
