/**
 * The client side of the fixed newstyle handshake, as the relay needs it: greeting, client
 * flags, then NBD_OPT_GO for one export asking for its block sizes. Simple replies only (no
 * structured replies are negotiated), which keeps the reply stream easy to follow.
 */

import type { Writable } from 'node:stream';
import type { ByteReader } from './byte-reader.js';
import { ProtocolError } from './protocol-error.js';
import {
  CLIENT_FLAG,
  decodeGreeting,
  decodeOptionReplyHeader,
  encodeClientFlags,
  encodeOption,
  GREETING,
  HANDSHAKE_FLAG,
  INFO,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  nameOfRep,
  OPT,
  OPTION_REPLY,
  REP,
  readU64BE,
} from './wire.js';

export interface ExportInfo {
  size: number;
  transmissionFlags: number;
  minBlockSize: number;
  preferredBlockSize: number;
  maxBlockSize: number;
}

/** NBD_OPT_GO's data: the name, then one information request (NBD_INFO_BLOCK_SIZE). */
function goData(name: string): Buffer {
  const text = Buffer.from(name, 'utf8');
  const buf = Buffer.alloc(4 + text.length + 2 + 2);
  buf.writeUInt32BE(text.length, 0);
  text.copy(buf, 4);
  buf.writeUInt16BE(1, 4 + text.length);
  buf.writeUInt16BE(INFO.BLOCK_SIZE, 6 + text.length);
  return buf;
}

/** Negotiates `name` on a fresh connection; resolves in transmission with the export's info. */
export async function clientHandshake(
  reader: ByteReader,
  out: Writable,
  name: string,
): Promise<ExportInfo> {
  const flags = decodeGreeting(await reader.read(GREETING.size));
  if ((flags & HANDSHAKE_FLAG.fixedNewstyle) === 0) {
    throw new ProtocolError('the server does not speak fixed newstyle');
  }
  const noZeroes = flags & HANDSHAKE_FLAG.noZeroes ? CLIENT_FLAG.noZeroes : 0;
  out.write(encodeClientFlags(CLIENT_FLAG.fixedNewstyle | noZeroes));
  out.write(encodeOption(OPT.GO, goData(name)));
  const info: ExportInfo = {
    size: -1,
    transmissionFlags: 0,
    minBlockSize: 1,
    preferredBlockSize: 4096,
    maxBlockSize: 32 * 1024 * 1024,
  };
  for (;;) {
    const header = decodeOptionReplyHeader(await reader.read(OPTION_REPLY.size));
    const data = header.length > 0 ? await reader.read(header.length) : Buffer.alloc(0);
    if (header.type === REP.ACK) break;
    if (header.type >= 2 ** 31) {
      throw new ProtocolError(
        `the server refused export '${name}': ${nameOfRep(header.type)} ${data.toString('utf8')}`,
      );
    }
    if (header.type === REP.INFO) readInfo(data, info);
  }
  if (info.size < 0) throw new ProtocolError('the server sent no NBD_INFO_EXPORT');
  return info;
}

function readInfo(data: Buffer, info: ExportInfo): void {
  const type = data.readUInt16BE(0);
  if (type === INFO.EXPORT && data.length >= INFO_EXPORT.size) {
    info.size = readU64BE(data, INFO_EXPORT.exportSize);
    info.transmissionFlags = data.readUInt16BE(INFO_EXPORT.transmissionFlags);
  } else if (type === INFO.BLOCK_SIZE && data.length >= INFO_BLOCK_SIZE.size) {
    info.minBlockSize = data.readUInt32BE(INFO_BLOCK_SIZE.minimum);
    info.preferredBlockSize = data.readUInt32BE(INFO_BLOCK_SIZE.preferred);
    info.maxBlockSize = data.readUInt32BE(INFO_BLOCK_SIZE.maximum);
  }
}
