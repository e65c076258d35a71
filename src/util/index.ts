/**
 * util: the bottom layer. Errors, units, sizes and JSON with positions; it imports no other
 * layer.
 */

export { AsyncRwLock, DeferredSet, KeyedLock, Mutex, QuiesceGate } from './async.js';
export { readU64LE, writeU64LE } from './bytes.js';
export { crc32c, crc32cRegister } from './crc32c.js';
export {
  BadBlockError,
  BadInputError,
  BusyError,
  ChecksumError,
  ConfigError,
  type ErrorDetails,
  ExistsError,
  InternalError,
  IoError,
  MetadataCorruptError,
  NoSpaceError,
  NotFoundError,
  ReadOnlyError,
  ThinpError,
  UnavailableError,
  UsageError,
} from './errors.js';
export { findOnPath } from './exec.js';
export { CRASH_AT_ENV, crashPoint } from './fault.js';
export { pathExists } from './files.js';
export {
  type JsonMember,
  type JsonNode,
  type JsonPosition,
  JsonSyntaxError,
  jsonTypeName,
  parseJson,
} from './json.js';
export { ReadPlan } from './read-plan.js';
export {
  formatHumanSize,
  formatSize,
  type PercentRule,
  parsePercent,
  parseSize,
  toSignificantDigits,
} from './sizes.js';
export { closestMatch, editDistance } from './suggest.js';
export { type Bytes, bytes, SECTOR_SIZE } from './units.js';
export { THINP_VERSION } from './version.js';
