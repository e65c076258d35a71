/**
 * Test plumbing for the NBD server: an in-memory Duplex pair with backpressure, and a small
 * raw NBD client that speaks the wire format byte by byte, so tests can send well-formed and
 * malformed messages alike and read back exactly what the server sent.
 */

import { Duplex } from 'node:stream';
import {
  type ConnectionOptions,
  type ExportRegistry,
  type NbdConnection,
  serveConnection,
  wire,
} from '../../../src/nbd/index.js';

/** Two connected Duplex ends: what one writes, the other reads. Destroying one ends both. */
export function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const waiting: Array<(() => void) | undefined> = [undefined, undefined];
  const make = (me: number): Duplex => {
    const other = 1 - me;
    return new Duplex({
      read() {
        const resume = waiting[other];
        waiting[other] = undefined;
        resume?.();
      },
      write(chunk: Buffer, _encoding, callback) {
        const peer = ends[other];
        if (peer === undefined || peer.destroyed || peer.readableEnded) return callback();
        if (peer.push(chunk)) callback();
        else waiting[me] = callback;
      },
      final(callback) {
        ends[other]?.push(null);
        callback();
      },
      destroy(err, callback) {
        const peer = ends[other];
        waiting[me]?.();
        waiting[me] = undefined;
        if (peer !== undefined && !peer.destroyed) {
          peer.push(null);
          setImmediate(() => peer.destroy());
        }
        callback(err);
      },
    });
  };
  ends.push(make(0), make(1));
  return ends as [Duplex, Duplex];
}

export interface ChunkReply {
  flags: number;
  type: number;
  payload: Buffer;
}

/** A reply as the test client saw it: a simple reply, or all chunks of a structured one. */
export interface Reply {
  handle: bigint;
  /** The simple reply's error, or the first error chunk's, else 0. */
  error: number;
  /** Read data (simple replies) or the OFFSET_DATA payloads reassembled. */
  data?: Buffer;
  chunks: ChunkReply[];
}

/** A raw NBD client over one end of a stream. */
export class RawClient {
  private buffered: Buffer[] = [];
  private length = 0;
  private ended = false;
  private wake: (() => void) | undefined;
  /** Read lengths of simple-reply reads in flight, by handle. */
  private readonly reads = new Map<bigint, number>();
  structured = false;

  constructor(readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      this.buffered.push(chunk);
      this.length += chunk.length;
      this.wake?.();
    });
    const end = () => {
      this.ended = true;
      this.wake?.();
    };
    stream.on('end', end);
    stream.on('close', end);
    stream.on('error', end);
  }

  /** True once the server closed the stream and every byte was read. */
  get closedByServer(): boolean {
    return this.ended && this.length === 0;
  }

  send(...buffers: Buffer[]): void {
    for (const b of buffers) this.stream.write(b);
  }

  /** The next `n` bytes; rejects if the stream ends first. */
  async read(n: number): Promise<Buffer> {
    while (this.length < n) {
      if (this.ended) throw new Error(`stream ended with ${this.length} of ${n} bytes`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
    const all = Buffer.concat(this.buffered);
    this.buffered = [all.subarray(n)];
    this.length -= n;
    return all.subarray(0, n);
  }

  /** Resolves once the server has closed the stream. */
  async waitClosed(): Promise<void> {
    while (!this.ended) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  async greeting(): Promise<number> {
    return wire.decodeGreeting(await this.read(wire.GREETING.size));
  }

  /** Sends an option and reads replies up to and including the final one. */
  async option(option: number, data?: Buffer): Promise<Array<{ type: number; data: Buffer }>> {
    this.send(wire.encodeOption(option, data));
    const replies: Array<{ type: number; data: Buffer }> = [];
    for (;;) {
      const header = wire.decodeOptionReplyHeader(await this.read(wire.OPTION_REPLY.size));
      const body = await this.read(header.length);
      replies.push({ type: header.type, data: body });
      const final = header.type === wire.REP.ACK || header.type >= 2 ** 31;
      if (final) return replies;
    }
  }

  /**
   * Greeting, flags, optional structured replies and base:allocation, then NBD_OPT_GO.
   * Returns the export size and transmission flags.
   */
  async connect(
    name: string,
    options: { structured?: boolean; allocation?: boolean } = {},
  ): Promise<{ size: number; flags: number }> {
    await this.greeting();
    this.send(wire.encodeClientFlags(wire.CLIENT_FLAG.fixedNewstyle | wire.CLIENT_FLAG.noZeroes));
    if (options.structured === true) {
      await this.option(wire.OPT.STRUCTURED_REPLY);
      this.structured = true;
    }
    if (options.allocation === true) {
      await this.option(wire.OPT.SET_META_CONTEXT, metaContextData(name, [wire.BASE_ALLOCATION]));
    }
    const replies = await this.option(wire.OPT.GO, infoData(name, [wire.INFO.BLOCK_SIZE]));
    const last = replies[replies.length - 1];
    if (last?.type !== wire.REP.ACK)
      throw new Error(`GO failed: ${wire.nameOfRep(last?.type ?? 0)}`);
    const info = replies.find((r) => r.data.readUInt16BE(0) === wire.INFO.EXPORT);
    if (info === undefined) throw new Error('no NBD_INFO_EXPORT');
    return {
      size: wire.readU64BE(info.data, wire.INFO_EXPORT.exportSize),
      flags: info.data.readUInt16BE(wire.INFO_EXPORT.transmissionFlags),
    };
  }

  /** Sends a request (and a write's payload). */
  request(req: wire.Request, payload?: Buffer): void {
    if (req.type === wire.CMD.READ && !this.structured) this.reads.set(req.handle, req.length);
    this.send(wire.encodeRequest(req), ...(payload === undefined ? [] : [payload]));
  }

  /** Reads the next complete reply (all chunks of a structured one). */
  async reply(): Promise<Reply> {
    const magic = (await this.read(4)).readUInt32BE(0);
    if (magic === wire.MAGIC.simpleReply) return this.simpleReply();
    if (magic === wire.MAGIC.structuredReply) return this.structuredReply();
    throw new Error(`bad reply magic 0x${magic.toString(16)}`);
  }

  private async simpleReply(): Promise<Reply> {
    const rest = await this.read(wire.SIMPLE_REPLY.size - 4);
    const error = rest.readUInt32BE(0);
    const handle = rest.readBigUInt64BE(4);
    const length = this.reads.get(handle);
    this.reads.delete(handle);
    if (length === undefined || error !== 0) return { handle, error, chunks: [] };
    return { handle, error, data: await this.read(length), chunks: [] };
  }

  private async structuredReply(): Promise<Reply> {
    const chunks: ChunkReply[] = [];
    let handle = 0n;
    for (let first = true; ; first = false) {
      if (!first) await this.read(4);
      const rest = await this.read(wire.CHUNK.size - 4);
      const flags = rest.readUInt16BE(0);
      const type = rest.readUInt16BE(2);
      handle = rest.readBigUInt64BE(4);
      const payload = await this.read(rest.readUInt32BE(12));
      chunks.push({ flags, type, payload });
      if ((flags & wire.REPLY_FLAG.DONE) !== 0) break;
    }
    return { handle, chunks, ...summarize(chunks) };
  }
}

function summarize(chunks: readonly ChunkReply[]): { error: number; data?: Buffer } {
  const failure = chunks.find((c) => c.type >= 2 ** 15);
  if (failure !== undefined) return { error: failure.payload.readUInt32BE(0) };
  const data = chunks.filter((c) => c.type === wire.REPLY_TYPE.OFFSET_DATA);
  if (data.length === 0) return { error: 0 };
  return { error: 0, data: Buffer.concat(data.map((c) => c.payload.subarray(8))) };
}

/** NBD_OPT_INFO / NBD_OPT_GO data. */
export function infoData(name: string, infos: readonly number[] = []): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const buf = Buffer.alloc(4 + nameBytes.length + 2 + 2 * infos.length);
  buf.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(buf, 4);
  buf.writeUInt16BE(infos.length, 4 + nameBytes.length);
  infos.forEach((info, i) => {
    buf.writeUInt16BE(info, 6 + nameBytes.length + 2 * i);
  });
  return buf;
}

/** NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT data. */
export function metaContextData(name: string, queries: readonly string[]): Buffer {
  const parts = [u32(Buffer.byteLength(name)), Buffer.from(name), u32(queries.length)];
  for (const q of queries) parts.push(u32(Buffer.byteLength(q)), Buffer.from(q));
  return Buffer.concat(parts);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** A server connection on one end of a fresh pair and a raw client on the other. */
export function connectPair(
  registry: ExportRegistry,
  options: Omit<ConnectionOptions, 'registry'> = {},
): { client: RawClient; connection: NbdConnection } {
  const [serverEnd, clientEnd] = duplexPair();
  const connection = serveConnection(serverEnd, { registry, ...options });
  return { client: new RawClient(clientEnd), connection };
}
