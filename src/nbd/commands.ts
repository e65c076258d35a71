/**
 * Dispatch of validated transmission requests to the `Export`, one function per command, and
 * the replies they send. Each reply is a single `ReplyWriter.send`, so it reaches the wire
 * whole, and replies to concurrent requests may complete in any order.
 *
 * Replies: a read is one final OFFSET_DATA chunk (one buffer, header and data, the export
 * reads straight into it) when structured replies are on, else a simple reply followed by the
 * data; large read buffers come from the connection's `BufferPool` and go back to it once
 * written. Other successes are simple replies (allowed: no payload). Errors are a final ERROR
 * chunk with a message when structured replies are on, else a simple reply with the errno.
 */

import { type BufferPool, MIN_POOLED } from './buffer-pool.js';
import { toNbdErrno } from './errno.js';
import type { Extent } from './export.js';
import type { Negotiated } from './handshake.js';
import type { NbdLog } from './log.js';
import type { ReplyWriter } from './reply-writer.js';
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
 * A read done at once, when the export can (`Export.readNow`): the data and its reply with
 * no promise and no await on the way, the cheap path of a read whose blocks are cached.
 * Returns false, having sent nothing, when the request is not such a read (then `execute`
 * it); otherwise `{ sent }`, where `sent` is the reply's send still to wait for when it had
 * to queue, and undefined when it went out at once.
 */
export function executeAtOnce(
  ctx: CommandContext,
  req: Request,
): { sent: Promise<void> | undefined } | false {
  const e = ctx.negotiated.export;
  if (req.type !== CMD.READ || e.readNow === undefined) return false;
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
    const errno = toNbdErrno(err);
    ctx.log('warn', 'request-failed', {
      cmd: nameOfCmd(req.type),
      offset: req.offset,
      length: req.length,
      errno: nameOfErrno(errno),
      error: err,
    });
    await sendError(ctx, req, errno, err instanceof Error ? err.message : String(err));
  }
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
