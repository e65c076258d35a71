/**
 * Dispatch of validated transmission requests to the `Export`, one function per command, and
 * the replies they send. Each reply is a single `ReplyWriter.send`, so it reaches the wire
 * whole, and replies to concurrent requests may complete in any order.
 *
 * Replies: a read is one final OFFSET_DATA chunk (one buffer, header and data, the export
 * reads straight into it) when structured replies are on, else a simple reply followed by the
 * data; large read buffers come from the connection's `BufferPool` and go back to it once
 * written. With the native sender (`ReplyWriter.native`) and an export that plans reads, a
 * read reply is the header and a plan of file pieces instead: the sender reads and sends
 * them, on this thread for a lone request, on its reader threads for one of a burst. Other
 * successes are simple replies (allowed: no payload). Errors are a final ERROR
 * chunk with a message when structured replies are on, else a simple reply with the errno.
 */

import { getSystemErrorName } from 'node:util';
import type { ReadPlan } from '../util/index.js';
import { type BufferPool, MIN_POOLED } from './buffer-pool.js';
import { toNbdErrno } from './errno.js';
import type { Extent } from './export.js';
import type { Negotiated } from './handshake.js';
import type { NbdLog } from './log.js';
import type { ReplyWriter } from './reply-writer.js';
import {
  READ_CORKED,
  READ_QUEUED,
  READ_SENT,
  SEND_BROKEN,
  SEND_CANCELED,
  type SocketSender,
} from './socket-sender.js';
import {
  CMD,
  CMD_FLAG,
  type Descriptor,
  encodeBlockStatusChunk,
  encodeErrorChunk,
  encodeSimpleReply,
  nameOfCmd,
  nameOfErrno,
  OFFSET_DATA_PAYLOAD,
  type Request,
  SIMPLE_REPLY,
  STATE,
  writeOffsetDataHeader,
  writeSimpleReply,
} from './wire.js';

/** What a command needs besides its request. */
export interface CommandContext {
  negotiated: Negotiated;
  writer: ReplyWriter;
  /** The connection's reusable read-reply buffers. */
  buffers: BufferPool;
  /** The connection's reusable read plan and reply header, for planned reads. */
  plan: ReadPlan;
  header: Buffer;
  log: NbdLog;
}

type Command = (ctx: CommandContext, req: Request, payload: Buffer | undefined) => Promise<void>;

const fua = (req: Request): boolean => (req.flags & CMD_FLAG.FUA) !== 0;

/** Sends a success reply without payload. */
function ok(ctx: CommandContext, req: Request): Promise<void> {
  return ctx.writer.send(encodeSimpleReply(req.handle, 0));
}

/** Sends an error reply for `req`, as the negotiated reply style allows. */
export function sendError(
  ctx: CommandContext,
  req: Request,
  errno: number,
  message: string,
): Promise<void> {
  if (ctx.negotiated.structuredReplies) {
    return ctx.writer.send(encodeErrorChunk(req.handle, errno, message));
  }
  return ctx.writer.send(encodeSimpleReply(req.handle, errno));
}

const read: Command = async (ctx, req) => {
  const e = ctx.negotiated.export;
  const header = replyHeaderSize(ctx);
  const buf = ctx.buffers.take(header + req.length);
  try {
    await e.read(buf.subarray(header), req.offset);
  } catch (err) {
    ctx.buffers.give(buf);
    throw err;
  }
  return sendRead(ctx, req, buf) ?? DONE;
};

const DONE: Promise<void> = Promise.resolve();

/** Bytes before the data in a read reply. */
function replyHeaderSize(ctx: CommandContext): number {
  return ctx.negotiated.structuredReplies ? OFFSET_DATA_PAYLOAD : SIMPLE_REPLY.size;
}

/** Sends the read reply `buf` (data filled in); undefined when it went out at once. */
function sendRead(ctx: CommandContext, req: Request, buf: Buffer): Promise<void> | undefined {
  if (ctx.negotiated.structuredReplies) {
    writeOffsetDataHeader(buf, req.handle, req.offset, req.length);
  } else {
    writeSimpleReply(buf, req.handle, 0);
  }
  if (buf.length >= MIN_POOLED) return ctx.writer.sendAtOnce(buf, () => ctx.buffers.give(buf));
  // A small reply is taken back only when the stream let go of it at once: waiting for its
  // write callback would cost more than the buffer.
  const sent = ctx.writer.sendAtOnce(buf);
  if (sent === undefined && ctx.writer.handedOver) ctx.buffers.give(buf);
  return sent;
}

/**
 * A read or a write done at once, when the export can (`Export.readNow`, `planRead`,
 * `writeNow`): the data and its reply with no promise and no await on the way, the cheap
 * path of a read whose blocks are cached and of an overwrite in place. Returns false,
 * having sent nothing, when the request is not such a read or write (then `execute` it);
 * otherwise `{ sent }`, where `sent` is the reply's send still to wait for when it had to
 * queue, and undefined when it went out at once. A write's `payload` is done with once this
 * returns `{ sent }`.
 */
export function executeAtOnce(
  ctx: CommandContext,
  req: Request,
  more = false,
  payload?: Buffer,
): { sent: Promise<void> | undefined } | false {
  const e = ctx.negotiated.export;
  if (req.type === CMD.WRITE) return writeAtOnce(ctx, req, payload);
  if (req.type !== CMD.READ) return false;
  const sender = ctx.writer.native;
  if (sender !== undefined && e.planRead !== undefined) return readPlanned(ctx, req, sender, more);
  if (e.readNow === undefined) return false;
  const header = replyHeaderSize(ctx);
  const buf = ctx.buffers.take(header + req.length);
  let done: boolean;
  try {
    done = e.readNow(buf.subarray(header), req.offset);
  } catch {
    done = false;
  }
  if (!done) {
    ctx.buffers.give(buf);
    return false;
  }
  return { sent: sendRead(ctx, req, buf) };
}

/** See `executeAtOnce`: an acknowledged write, or false having written nothing. */
function writeAtOnce(
  ctx: CommandContext,
  req: Request,
  payload: Buffer | undefined,
): { sent: Promise<void> | undefined } | false {
  const e = ctx.negotiated.export;
  if (e.writeNow === undefined || payload === undefined) return false;
  if (!e.writeNow(payload, req.offset, { fua: fua(req) })) return false;
  return { sent: ctx.writer.sendAtOnce(encodeSimpleReply(req.handle, 0)) };
}

/**
 * Reads at least this long, of a burst, are read on the sender's threads, in parallel with
 * the event loop; shorter ones are copied here (a copy of a few KiB costs less than the
 * hand-off) and their replies sent together at the end of the burst.
 */
const READ_IN_PARALLEL = 64 * 1024;

/**
 * A read through the native sender (see the top of this file); `more`: other requests of the
 * same burst follow, so the copies go to the sender's threads. False, having sent nothing,
 * when the export cannot plan the read now or a read of the page cache failed at once (then
 * `execute` it: the slow path reports the failure in full).
 */
function readPlanned(
  ctx: CommandContext,
  req: Request,
  sender: SocketSender,
  more: boolean,
): { sent: Promise<void> | undefined } | false {
  const plan = ctx.plan;
  let planned: boolean;
  try {
    planned = ctx.negotiated.export.planRead?.(req.offset, req.length, plan) ?? false;
  } catch {
    planned = false;
  }
  if (!planned) return false;
  const header = ctx.header.subarray(0, replyHeaderSize(ctx));
  if (ctx.negotiated.structuredReplies) {
    writeOffsetDataHeader(header, req.handle, req.offset, req.length);
  } else {
    writeSimpleReply(header, req.handle, 0);
  }
  const atOnce = !more || req.length < READ_IN_PARALLEL;
  const r = sender.sendRead(header, plan.pieces, plan.count, atOnce);
  // The plan is the connection's: a queued read's entry is kept here until it is read.
  const release = r === READ_QUEUED ? plan.handOver() : undefined;
  plan.release();
  if (r === READ_SENT || r === READ_CORKED || r === SEND_BROKEN || r === SEND_CANCELED) {
    return { sent: undefined };
  }
  if (r < 0) return false;
  const sent = sender.settled(sender.lastTag).then((result) => {
    release?.();
    if (result >= 0 || result === SEND_BROKEN || result === SEND_CANCELED) return;
    const err = Object.assign(new Error(`${getSystemErrorName(result)}: read failed`), {
      code: getSystemErrorName(result),
      errno: result,
    });
    return failed(ctx, req, err);
  });
  return { sent };
}

const write: Command = async (ctx, req, payload) => {
  await ctx.negotiated.export.write(payload ?? Buffer.alloc(0), req.offset, { fua: fua(req) });
  return ok(ctx, req);
};

const flush: Command = async (ctx, req) => {
  await ctx.negotiated.export.flush();
  return ok(ctx, req);
};

const trim: Command = async (ctx, req) => {
  await ctx.negotiated.export.trim(req.offset, req.length, { fua: fua(req) });
  return ok(ctx, req);
};

const writeZeroes: Command = async (ctx, req) => {
  await ctx.negotiated.export.writeZeroes(req.offset, req.length, {
    fua: fua(req),
    noHole: (req.flags & CMD_FLAG.NO_HOLE) !== 0,
    fastZero: (req.flags & CMD_FLAG.FAST_ZERO) !== 0,
  });
  return ok(ctx, req);
};

const cache: Command = async (ctx, req) => {
  await ctx.negotiated.export.cache?.(req.offset, req.length);
  return ok(ctx, req);
};

const blockStatus: Command = async (ctx, req) => {
  const extents = await ctx.negotiated.export.blockStatus(req.offset, req.length);
  const one = (req.flags & CMD_FLAG.REQ_ONE) !== 0;
  const descriptors = toDescriptors(extents, req.length, one);
  const id = ctx.negotiated.allocationContext ?? 0;
  return ctx.writer.send(encodeBlockStatusChunk(req.handle, id, descriptors));
};

const COMMANDS: Readonly<Record<number, Command>> = {
  [CMD.READ]: read,
  [CMD.WRITE]: write,
  [CMD.FLUSH]: flush,
  [CMD.TRIM]: trim,
  [CMD.CACHE]: cache,
  [CMD.WRITE_ZEROES]: writeZeroes,
  [CMD.BLOCK_STATUS]: blockStatus,
};

/**
 * Runs a validated request and sends its reply; never rejects. A failure is replied with
 * `toNbdErrno(err)` and logged in full.
 */
export async function execute(ctx: CommandContext, req: Request, payload?: Buffer): Promise<void> {
  const command = COMMANDS[req.type];
  try {
    if (command === undefined) throw new RangeError(`no handler for ${nameOfCmd(req.type)}`);
    await command(ctx, req, payload);
  } catch (err) {
    await failed(ctx, req, err);
  }
}

/** Logs the failure of `req` in full and replies with its NBD errno. */
function failed(ctx: CommandContext, req: Request, err: unknown): Promise<void> {
  const errno = toNbdErrno(err);
  ctx.log('warn', 'request-failed', {
    cmd: nameOfCmd(req.type),
    offset: req.offset,
    length: req.length,
    errno: nameOfErrno(errno),
    error: err,
  });
  return sendError(ctx, req, errno, err instanceof Error ? err.message : String(err));
}

/**
 * `base:allocation` descriptors for `extents`: empty extents dropped, equal neighbours
 * merged, clipped to `length`, at most one with `one` (REQ_ONE). If the export reports
 * nothing usable, one descriptor with status 0 ("allocated, contents unknown") covers the
 * request, which the spec says is always safe.
 */
export function toDescriptors(
  extents: readonly Extent[],
  length: number,
  one: boolean,
): Descriptor[] {
  const out: Descriptor[] = [];
  let covered = 0;
  for (const extent of extents) {
    if (covered >= length) break;
    const size = Math.min(extent.length, length - covered);
    if (!(size > 0)) continue;
    const flags = (extent.hole ? STATE.HOLE : 0) | (extent.zero ? STATE.ZERO : 0);
    const last = out[out.length - 1];
    if (last !== undefined && last.flags === flags) last.length += size;
    else if (one && last !== undefined) break;
    else out.push({ length: size, flags });
    covered += size;
  }
  return out.length > 0 ? out : [{ length, flags: 0 }];
}
