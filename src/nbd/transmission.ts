/**
 * The transmission phase's framing: read a request header → `validateRequest()` → on
 * rejection reply with the error and skip a write's payload so the stream stays in step →
 * otherwise gather the write payload (one buffer of exactly `length` bytes) → hand the
 * request to the connection, which runs it against the export without waiting for it.
 *
 * A bad request magic cannot be skipped (the framing is lost): decoding throws a
 * `ProtocolError` and the connection hard-disconnects. NBD_CMD_DISC ends the session softly.
 */

import type { FrameSink, Need } from './framer.js';
import type { Negotiated } from './handshake.js';
import type { NbdLog } from './log.js';
import { type Rejection, validateRequest } from './validate-request.js';
import { CMD, decodeRequest, nameOfCmd, nameOfErrno, REQUEST, type Request } from './wire.js';

/** What the transmission phase asks of its connection. */
export interface TransmissionHost {
  /**
   * Runs a valid request (with its payload, for writes) and replies, in the background.
   * `lent`: the payload is a view valid only during the call (framer.ts).
   */
  execute(req: Request, payload: Buffer | undefined, lent: boolean): void;
  /** Replies to a rejected request with its error. */
  reject(req: Request, rejection: Rejection): void;
  /** NBD_CMD_DISC: finish in-flight requests, then close. */
  disconnect(): 'stop';
}

const HEADER: Need = { take: REQUEST.size };

export class Transmission implements FrameSink {
  /** A valid write whose payload is the next frame. */
  private pendingWrite: Request | undefined;

  constructor(
    readonly negotiated: Negotiated,
    private readonly host: TransmissionHost,
    private readonly log: NbdLog,
  ) {}

  /** The first need of the phase: a request header. */
  start(): Need {
    return HEADER;
  }

  frame(data: Buffer, lent = false): Need {
    const write = this.pendingWrite;
    if (write !== undefined) {
      this.pendingWrite = undefined;
      this.host.execute(write, data, lent);
      return HEADER;
    }
    return this.onRequest(decodeRequest(data));
  }

  skipped(): Need {
    return HEADER;
  }

  private onRequest(req: Request): Need {
    if (req.type === CMD.DISC) return this.host.disconnect();
    const rejection = validateRequest(req, this.negotiated);
    if (rejection !== undefined) return this.onRejected(req, rejection);
    if (req.type === CMD.WRITE) {
      this.pendingWrite = req;
      return { take: req.length };
    }
    this.host.execute(req, undefined, false);
    return HEADER;
  }

  private onRejected(req: Request, rejection: Rejection): Need {
    this.log('debug', 'request-rejected', {
      cmd: nameOfCmd(req.type),
      offset: req.offset,
      length: req.length,
      flags: req.flags,
      errno: nameOfErrno(rejection.errno),
      reason: rejection.reason,
    });
    this.host.reject(req, rejection);
    return req.type === CMD.WRITE && req.length > 0 ? { skip: req.length } : HEADER;
  }
}
