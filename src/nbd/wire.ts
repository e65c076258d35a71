/**
 * The NBD wire format (NetworkBlockDevice/nbd doc/proto.md, fixed newstyle): every magic
 * number, option, reply type, command, flag, error number and info type, the layout of each
 * fixed-size message as named offsets, and the encoders and decoders that read and write them
 * in wire order. Everything on the wire is big-endian. Nothing outside this file uses a raw
 * offset.
 *
 * Decoders trust nothing: a wrong magic number is a `ProtocolError`. 64-bit offsets and sizes
 * are read as two u32 halves into a `number`; a value above 2^53 - 1 comes back as
 * `Number.MAX_SAFE_INTEGER + 1` or more, which every export size check rejects. Handles are
 * opaque to the server and travel as `bigint`.
 */

import { ProtocolError } from './protocol-error.js';

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

/** The 64-bit magic numbers, as ASCII where the spec gives them so. */
export const MAGIC = {
  /** 'NBDMAGIC', the server's first eight bytes (INIT_PASSWD). */
  nbd: Buffer.from('NBDMAGIC', 'latin1'),
  /** 'IHAVEOPT', after NBDMAGIC in the greeting and before every option. */
  ihaveopt: Buffer.from('IHAVEOPT', 'latin1'),
  /** 0x0003e889045565a9, before every option reply. */
  optionReply: Buffer.from('0003e889045565a9', 'hex'),
  /** 0x25609513, NBD_REQUEST_MAGIC. */
  request: 0x25609513,
  /** 0x67446698, NBD_SIMPLE_REPLY_MAGIC. */
  simpleReply: 0x67446698,
  /** 0x668e33ef, NBD_STRUCTURED_REPLY_MAGIC. */
  structuredReply: 0x668e33ef,
} as const;

/** Handshake flags (16 bits, server → client). */
export const HANDSHAKE_FLAG = { fixedNewstyle: 1 << 0, noZeroes: 1 << 1 } as const;

/** Client flags (32 bits, client → server). Any other bit ends the session. */
export const CLIENT_FLAG = { fixedNewstyle: 1 << 0, noZeroes: 1 << 1 } as const;

/** Transmission flags (16 bits). */
export const TRANSMISSION_FLAG = {
  hasFlags: 1 << 0,
  readOnly: 1 << 1,
  sendFlush: 1 << 2,
  sendFua: 1 << 3,
  rotational: 1 << 4,
  sendTrim: 1 << 5,
  sendWriteZeroes: 1 << 6,
  sendDf: 1 << 7,
  canMultiConn: 1 << 8,
  sendResize: 1 << 9,
  sendCache: 1 << 10,
  sendFastZero: 1 << 11,
} as const;

/** Option types (NBD_OPT_*). */
export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

const REP_ERR = 2 ** 31;

/** Option reply types (NBD_REP_*); errors have bit 31 set. */
export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: REP_ERR + 1,
  ERR_POLICY: REP_ERR + 2,
  ERR_INVALID: REP_ERR + 3,
  ERR_PLATFORM: REP_ERR + 4,
  ERR_TLS_REQD: REP_ERR + 5,
  ERR_UNKNOWN: REP_ERR + 6,
  ERR_SHUTDOWN: REP_ERR + 7,
  ERR_BLOCK_SIZE_REQD: REP_ERR + 8,
  ERR_TOO_BIG: REP_ERR + 9,
} as const;

/** Information types in NBD_REP_INFO replies to NBD_OPT_INFO and NBD_OPT_GO. */
export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Request types (NBD_CMD_*). */
export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

/** Command flags (16 bits, per request). */
export const CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** Structured reply chunk flags. */
export const REPLY_FLAG = { DONE: 1 << 0 } as const;

/** Structured reply chunk types; error chunks have bit 15 set. */
export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 2 ** 15 + 1,
  ERROR_OFFSET: 2 ** 15 + 2,
} as const;

/** The error numbers a reply may carry (NBD_E*); not the host's errno values. */
export const NBD_ERRNO = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

export type NbdErrno = (typeof NBD_ERRNO)[keyof typeof NBD_ERRNO];

/** `base:allocation` status flags. */
export const STATE = { HOLE: 1 << 0, ZERO: 1 << 1 } as const;

/** The one metadata context this server offers. */
export const BASE_ALLOCATION = 'base:allocation';

/** The longest string (export name, description, query) the spec allows. */
export const MAX_STRING_LENGTH = 4096;

// ---------------------------------------------------------------------------------------------
// Names, for logs
// ---------------------------------------------------------------------------------------------

function nameIn(table: Readonly<Record<string, number>>, prefix: string, value: number): string {
  for (const [name, v] of Object.entries(table)) if (v === value) return `${prefix}${name}`;
  return `${prefix}UNKNOWN(${value})`;
}

/** "NBD_CMD_READ", or "NBD_CMD_UNKNOWN(9)". */
export const nameOfCmd = (type: number): string => nameIn(CMD, 'NBD_CMD_', type);
/** "NBD_OPT_GO", or "NBD_OPT_UNKNOWN(42)". */
export const nameOfOpt = (option: number): string => nameIn(OPT, 'NBD_OPT_', option);
/** "NBD_REP_ERR_UNSUP", … */
export const nameOfRep = (type: number): string => nameIn(REP, 'NBD_REP_', type);
/** "NBD_INFO_EXPORT", … */
export const nameOfInfo = (type: number): string => nameIn(INFO, 'NBD_INFO_', type);
/** "NBD_REPLY_TYPE_ERROR", … */
export const nameOfReplyType = (type: number): string =>
  nameIn(REPLY_TYPE, 'NBD_REPLY_TYPE_', type);
/** "NBD_EINVAL", … */
export const nameOfErrno = (errno: number): string => nameIn(NBD_ERRNO, 'NBD_', errno);

// ---------------------------------------------------------------------------------------------
// Layouts (byte offsets of each field, and the total size)
// ---------------------------------------------------------------------------------------------

/** S: the first message: NBDMAGIC, IHAVEOPT, handshake flags. */
export const GREETING = { nbdMagic: 0, optMagic: 8, handshakeFlags: 16, size: 18 } as const;
/** C: the client flags. */
export const CLIENT_FLAGS = { flags: 0, size: 4 } as const;
/** C: an option header, followed by `length` bytes of option data. */
export const OPTION = { magic: 0, option: 8, length: 12, size: 16 } as const;
/** S: an option reply header, followed by `length` bytes of reply data. */
export const OPTION_REPLY = { magic: 0, option: 8, type: 12, length: 16, size: 20 } as const;
/** S: the answer to NBD_OPT_EXPORT_NAME; the 124 zero bytes are left out with NO_ZEROES. */
export const EXPORT_NAME_REPLY = { exportSize: 0, transmissionFlags: 8, size: 134 } as const;
/** S: the payload of NBD_INFO_EXPORT. */
export const INFO_EXPORT = { type: 0, exportSize: 2, transmissionFlags: 10, size: 12 } as const;
/** S: the payload of NBD_INFO_BLOCK_SIZE. */
export const INFO_BLOCK_SIZE = {
  type: 0,
  minimum: 2,
  preferred: 6,
  maximum: 10,
  size: 14,
} as const;
/** C: a transmission request, followed by `length` bytes of data for NBD_CMD_WRITE. */
export const REQUEST = {
  magic: 0,
  flags: 4,
  type: 6,
  handle: 8,
  offset: 16,
  length: 24,
  size: 28,
} as const;
/** S: a simple reply, followed by the data of a successful NBD_CMD_READ. */
export const SIMPLE_REPLY = { magic: 0, error: 4, handle: 8, size: 16 } as const;
/** S: a structured reply chunk header, followed by `length` bytes of payload. */
export const CHUNK = { magic: 0, flags: 4, type: 6, handle: 8, length: 16, size: 20 } as const;
/** The payload of NBD_REPLY_TYPE_OFFSET_DATA: the offset, then the data. */
export const OFFSET_DATA = { offset: 0, data: 8 } as const;
/** The payload of NBD_REPLY_TYPE_ERROR: errno, message length, message. */
export const ERROR_CHUNK = { error: 0, messageLength: 4, message: 6 } as const;
/** The payload of NBD_REPLY_TYPE_BLOCK_STATUS: context id, then descriptors. */
export const BLOCK_STATUS = { contextId: 0, descriptors: 4, descriptorSize: 8 } as const;

// ---------------------------------------------------------------------------------------------
// 64-bit big-endian helpers
// ---------------------------------------------------------------------------------------------

const TWO_32 = 2 ** 32;

/** A big-endian u64 as a number; above 2^53 - 1 it is no longer exact, but stays that large. */
export function readU64BE(buf: Buffer, offset: number): number {
  return buf.readUInt32BE(offset) * TWO_32 + buf.readUInt32BE(offset + 4);
}

/** Writes a safe non-negative integer as a big-endian u64. */
export function writeU64BE(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), offset);
  buf.writeUInt32BE(value % TWO_32, offset + 4);
}

function expectMagic(buf: Buffer, at: number, magic: Buffer, what: string): void {
  if (!buf.subarray(at, at + magic.length).equals(magic)) {
    throw new ProtocolError(`bad magic in ${what}: ${buf.toString('hex', at, at + magic.length)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Handshake messages
// ---------------------------------------------------------------------------------------------

export function encodeGreeting(handshakeFlags: number): Buffer {
  const buf = Buffer.alloc(GREETING.size);
  MAGIC.nbd.copy(buf, GREETING.nbdMagic);
  MAGIC.ihaveopt.copy(buf, GREETING.optMagic);
  buf.writeUInt16BE(handshakeFlags, GREETING.handshakeFlags);
  return buf;
}

/** The handshake flags of a greeting (for clients and tests). */
export function decodeGreeting(buf: Buffer): number {
  expectMagic(buf, GREETING.nbdMagic, MAGIC.nbd, 'greeting');
  expectMagic(buf, GREETING.optMagic, MAGIC.ihaveopt, 'greeting');
  return buf.readUInt16BE(GREETING.handshakeFlags);
}

export function encodeClientFlags(flags: number): Buffer {
  const buf = Buffer.alloc(CLIENT_FLAGS.size);
  buf.writeUInt32BE(flags >>> 0, CLIENT_FLAGS.flags);
  return buf;
}

export function decodeClientFlags(buf: Buffer): number {
  return buf.readUInt32BE(CLIENT_FLAGS.flags);
}

export interface OptionHeader {
  option: number;
  length: number;
}

/** The header of an option and its data, as one buffer (for clients and tests). */
export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const buf = Buffer.alloc(OPTION.size + data.length);
  MAGIC.ihaveopt.copy(buf, OPTION.magic);
  buf.writeUInt32BE(option >>> 0, OPTION.option);
  buf.writeUInt32BE(data.length, OPTION.length);
  data.copy(buf, OPTION.size);
  return buf;
}

export function decodeOptionHeader(buf: Buffer): OptionHeader {
  expectMagic(buf, OPTION.magic, MAGIC.ihaveopt, 'option header');
  return { option: buf.readUInt32BE(OPTION.option), length: buf.readUInt32BE(OPTION.length) };
}

export interface OptionReplyHeader {
  option: number;
  type: number;
  length: number;
}

export function encodeOptionReply(option: number, type: number, data?: Buffer): Buffer {
  const length = data?.length ?? 0;
  const buf = Buffer.alloc(OPTION_REPLY.size + length);
  MAGIC.optionReply.copy(buf, OPTION_REPLY.magic);
  buf.writeUInt32BE(option >>> 0, OPTION_REPLY.option);
  buf.writeUInt32BE(type >>> 0, OPTION_REPLY.type);
  buf.writeUInt32BE(length, OPTION_REPLY.length);
  data?.copy(buf, OPTION_REPLY.size);
  return buf;
}

export function decodeOptionReplyHeader(buf: Buffer): OptionReplyHeader {
  expectMagic(buf, OPTION_REPLY.magic, MAGIC.optionReply, 'option reply');
  return {
    option: buf.readUInt32BE(OPTION_REPLY.option),
    type: buf.readUInt32BE(OPTION_REPLY.type),
    length: buf.readUInt32BE(OPTION_REPLY.length),
  };
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zeroes unless `noZeroes`. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const buf = Buffer.alloc(
    noZeroes ? EXPORT_NAME_REPLY.transmissionFlags + 2 : EXPORT_NAME_REPLY.size,
  );
  writeU64BE(buf, EXPORT_NAME_REPLY.exportSize, size);
  buf.writeUInt16BE(flags, EXPORT_NAME_REPLY.transmissionFlags);
  return buf;
}

/** NBD_REP_SERVER data: name length, name, then the description. */
export function encodeServerData(name: string, description = ''): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const buf = Buffer.alloc(4 + nameBytes.length + Buffer.byteLength(description, 'utf8'));
  buf.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(buf, 4);
  buf.write(description, 4 + nameBytes.length, 'utf8');
  return buf;
}

export function encodeInfoExport(size: number, flags: number): Buffer {
  const buf = Buffer.alloc(INFO_EXPORT.size);
  buf.writeUInt16BE(INFO.EXPORT, INFO_EXPORT.type);
  writeU64BE(buf, INFO_EXPORT.exportSize, size);
  buf.writeUInt16BE(flags, INFO_EXPORT.transmissionFlags);
  return buf;
}

/** NBD_INFO_NAME or NBD_INFO_DESCRIPTION: the type, then the string. */
export function encodeInfoString(type: number, text: string): Buffer {
  const buf = Buffer.alloc(2 + Buffer.byteLength(text, 'utf8'));
  buf.writeUInt16BE(type, 0);
  buf.write(text, 2, 'utf8');
  return buf;
}

export interface BlockSizes {
  minimum: number;
  preferred: number;
  maximum: number;
}

export function encodeInfoBlockSize(sizes: BlockSizes): Buffer {
  const buf = Buffer.alloc(INFO_BLOCK_SIZE.size);
  buf.writeUInt16BE(INFO.BLOCK_SIZE, INFO_BLOCK_SIZE.type);
  buf.writeUInt32BE(sizes.minimum, INFO_BLOCK_SIZE.minimum);
  buf.writeUInt32BE(sizes.preferred, INFO_BLOCK_SIZE.preferred);
  buf.writeUInt32BE(sizes.maximum, INFO_BLOCK_SIZE.maximum);
  return buf;
}

/** NBD_REP_META_CONTEXT data: the context id, then its name. */
export function encodeMetaContextData(id: number, name: string): Buffer {
  const buf = Buffer.alloc(4 + Buffer.byteLength(name, 'utf8'));
  buf.writeUInt32BE(id, 0);
  buf.write(name, 4, 'utf8');
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Transmission messages
// ---------------------------------------------------------------------------------------------

export interface Request {
  flags: number;
  type: number;
  handle: bigint;
  /** Exact up to 2^53 - 1; larger offsets stay larger than any export. */
  offset: number;
  length: number;
}

export function encodeRequest(request: Request): Buffer {
  const buf = Buffer.alloc(REQUEST.size);
  buf.writeUInt32BE(MAGIC.request, REQUEST.magic);
  buf.writeUInt16BE(request.flags, REQUEST.flags);
  buf.writeUInt16BE(request.type, REQUEST.type);
  buf.writeBigUInt64BE(request.handle, REQUEST.handle);
  writeU64BE(buf, REQUEST.offset, request.offset);
  buf.writeUInt32BE(request.length, REQUEST.length);
  return buf;
}

export function decodeRequest(buf: Buffer): Request {
  const magic = buf.readUInt32BE(REQUEST.magic);
  if (magic !== MAGIC.request) {
    throw new ProtocolError(`bad request magic 0x${magic.toString(16).padStart(8, '0')}`);
  }
  return {
    flags: buf.readUInt16BE(REQUEST.flags),
    type: buf.readUInt16BE(REQUEST.type),
    handle: buf.readBigUInt64BE(REQUEST.handle),
    offset: readU64BE(buf, REQUEST.offset),
    length: buf.readUInt32BE(REQUEST.length),
  };
}

/** Writes a simple reply header at the start of `buf` (which may hold read data after it). */
export function writeSimpleReply(buf: Buffer, handle: bigint, error: number): void {
  buf.writeUInt32BE(MAGIC.simpleReply, SIMPLE_REPLY.magic);
  buf.writeUInt32BE(error, SIMPLE_REPLY.error);
  buf.writeBigUInt64BE(handle, SIMPLE_REPLY.handle);
}

export function encodeSimpleReply(handle: bigint, error: number): Buffer {
  const buf = Buffer.alloc(SIMPLE_REPLY.size);
  writeSimpleReply(buf, handle, error);
  return buf;
}

export interface SimpleReply {
  error: number;
  handle: bigint;
}

export function decodeSimpleReply(buf: Buffer): SimpleReply {
  const magic = buf.readUInt32BE(SIMPLE_REPLY.magic);
  if (magic !== MAGIC.simpleReply) throw new ProtocolError('bad simple reply magic');
  return {
    error: buf.readUInt32BE(SIMPLE_REPLY.error),
    handle: buf.readBigUInt64BE(SIMPLE_REPLY.handle),
  };
}

export interface ChunkHeader {
  flags: number;
  type: number;
  handle: bigint;
  /** Payload bytes after the header. */
  length: number;
}

/** Writes a structured chunk header at the start of `buf`. */
export function writeChunkHeader(buf: Buffer, chunk: ChunkHeader): void {
  buf.writeUInt32BE(MAGIC.structuredReply, CHUNK.magic);
  buf.writeUInt16BE(chunk.flags, CHUNK.flags);
  buf.writeUInt16BE(chunk.type, CHUNK.type);
  buf.writeBigUInt64BE(chunk.handle, CHUNK.handle);
  buf.writeUInt32BE(chunk.length, CHUNK.length);
}

export function decodeChunkHeader(buf: Buffer): ChunkHeader {
  const magic = buf.readUInt32BE(CHUNK.magic);
  if (magic !== MAGIC.structuredReply) throw new ProtocolError('bad structured reply magic');
  return {
    flags: buf.readUInt16BE(CHUNK.flags),
    type: buf.readUInt16BE(CHUNK.type),
    handle: buf.readBigUInt64BE(CHUNK.handle),
    length: buf.readUInt32BE(CHUNK.length),
  };
}

/** The longest error message sent in an error chunk (the spec's string limit). */
const MAX_MESSAGE = MAX_STRING_LENGTH;

/** A final NBD_REPLY_TYPE_ERROR chunk carrying `errno` and a message for humans. */
export function encodeErrorChunk(handle: bigint, errno: number, message: string): Buffer {
  const text = Buffer.from(message, 'utf8').subarray(0, MAX_MESSAGE);
  const buf = Buffer.alloc(CHUNK.size + ERROR_CHUNK.message + text.length);
  const length = buf.length - CHUNK.size;
  writeChunkHeader(buf, { flags: REPLY_FLAG.DONE, type: REPLY_TYPE.ERROR, handle, length });
  buf.writeUInt32BE(errno, CHUNK.size + ERROR_CHUNK.error);
  buf.writeUInt16BE(text.length, CHUNK.size + ERROR_CHUNK.messageLength);
  text.copy(buf, CHUNK.size + ERROR_CHUNK.message);
  return buf;
}

/** A final NBD_REPLY_TYPE_NONE chunk. */
export function encodeNoneChunk(handle: bigint): Buffer {
  const buf = Buffer.alloc(CHUNK.size);
  writeChunkHeader(buf, { flags: REPLY_FLAG.DONE, type: REPLY_TYPE.NONE, handle, length: 0 });
  return buf;
}

/**
 * One buffer for a final NBD_REPLY_TYPE_OFFSET_DATA chunk of `length` data bytes, header
 * filled in; the caller reads the data into `dataOf(buf)`.
 */
export function allocOffsetDataChunk(handle: bigint, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(CHUNK.size + OFFSET_DATA.data + length);
  writeOffsetDataHeader(buf, handle, offset, length);
  return buf;
}

/**
 * Fills in the header of a final NBD_REPLY_TYPE_OFFSET_DATA chunk of `length` data bytes at
 * the start of `buf` (of `OFFSET_DATA_PAYLOAD + length` bytes); the data goes after it.
 */
export function writeOffsetDataHeader(
  buf: Buffer,
  handle: bigint,
  offset: number,
  length: number,
): void {
  const chunk = {
    flags: REPLY_FLAG.DONE,
    type: REPLY_TYPE.OFFSET_DATA,
    handle,
    length: OFFSET_DATA.data + length,
  };
  writeChunkHeader(buf, chunk);
  writeU64BE(buf, CHUNK.size + OFFSET_DATA.offset, offset);
}

/** Where the data goes in a buffer from `allocOffsetDataChunk`. */
export const OFFSET_DATA_PAYLOAD = CHUNK.size + OFFSET_DATA.data;

export interface Descriptor {
  length: number;
  flags: number;
}

/** A final NBD_REPLY_TYPE_BLOCK_STATUS chunk for one metadata context. */
export function encodeBlockStatusChunk(
  handle: bigint,
  contextId: number,
  descriptors: readonly Descriptor[],
): Buffer {
  const length = BLOCK_STATUS.descriptors + descriptors.length * BLOCK_STATUS.descriptorSize;
  const buf = Buffer.alloc(CHUNK.size + length);
  writeChunkHeader(buf, { flags: REPLY_FLAG.DONE, type: REPLY_TYPE.BLOCK_STATUS, handle, length });
  buf.writeUInt32BE(contextId, CHUNK.size + BLOCK_STATUS.contextId);
  let at = CHUNK.size + BLOCK_STATUS.descriptors;
  for (const d of descriptors) {
    buf.writeUInt32BE(d.length, at);
    buf.writeUInt32BE(d.flags, at + 4);
    at += BLOCK_STATUS.descriptorSize;
  }
  return buf;
}
