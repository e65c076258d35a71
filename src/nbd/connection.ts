/**
 * One NBD client connection over any `Duplex` (a socket, or an in-memory pair in tests and
 * fuzzers): the handshake, then the transmission loop, with many requests in flight.
 *
 * Life cycle. The status only ever goes down: ACTIVE > SHUTDOWN > CLIENT_DONE > DEAD.
 * - ACTIVE: framing input, running requests.
 * - SHUTDOWN: the server is closing; no more input is read, in-flight requests finish and
 *   are replied to, then the stream is ended.
 * - CLIENT_DONE: the client sent NBD_CMD_DISC or NBD_OPT_ABORT, or ended its side; the same
 *   orderly ending.
 * - DEAD: a protocol violation or a stream error; the stream is destroyed at once. In-flight
 *   requests still run to completion against the export (their replies are dropped).
 * `closed` resolves once the stream has closed and no request is in flight, so nothing the
 * connection started outlives it. It never rejects.
 *
 * Flow control. Input is held (framer and stream paused) while `maxInFlight` requests run or
 * `maxQueuedReplies` replies wait for the writer, so memory stays bounded whatever the client
 * sends; the writer itself waits for 'drain'.
 *
 * Input. Chunks come as the stream's 'data' events, or lent (`options.lend`, a socket that
 * reads into one reusable buffer: lending-socket.ts), valid only while they are framed; a
 * write payload that must outlive its frame is then copied into a pooled buffer.
 *
 * Polling. On a socket in transmission, once nothing is in flight at the end of a turn, the
 * connection watches the socket for a moment before the event loop sleeps (input-poll.ts):
 * at queue depth 1 the next request is then read without a wake-up.
 */

import { constants } from 'node:os';
import type { Duplex } from 'node:stream';
import { ReadPlan } from '../util/index.js';
import { BufferPool } from './buffer-pool.js';
import { type CommandContext, execute, executeAtOnce, sendError } from './commands.js';
import type { ExportRegistry } from './export.js';
import { Framer, type FrameSink, type Need } from './framer.js';
import { Handshake, type Negotiated } from './handshake.js';
import { BUDGET_US, InputPoll } from './input-poll.js';
import { type NbdLog, silentLog } from './log.js';
import { ProtocolError } from './protocol-error.js';
import { ReplyWriter } from './reply-writer.js';
import { SocketSender } from './socket-sender.js';
import { Transmission } from './transmission.js';
import type { Rejection } from './validate-request.js';
import { OFFSET_DATA_PAYLOAD, REQUEST, type Request } from './wire.js';

export const STATUS = { DEAD: 0, CLIENT_DONE: 1, SHUTDOWN: 2, ACTIVE: 3 } as const;
export type ConnectionStatus = (typeof STATUS)[keyof typeof STATUS];

export interface ConnectionOptions {
  registry: ExportRegistry;
  log?: NbdLog;
  /** Requests run at once before input is held; 64 unless given. */
  maxInFlight?: number;
  /** Replies queued for the writer before input is held; 64 unless given. */
  maxQueuedReplies?: number;
  /** Names the connection in log events. */
  id?: string;
  /**
   * Where the stream's input comes from instead of its 'data' events: called once with the
   * connection's receiver, which takes lent chunks (lending-socket.ts).
   */
  lend?: (receive: (chunk: Buffer) => void) => void;
}

/** Nothing came while polling. */
const EAGAIN = constants.errno.EAGAIN;
/** What one poll reads at most: a chunk as large as the stream's own reads. */
const POLL_BUFFER_SIZE = 64 * 1024;

export class NbdConnection {
  private statusValue: ConnectionStatus = STATUS.ACTIVE;
  private readonly writer: ReplyWriter;
  private readonly framer: Framer;
  private readonly log: NbdLog;
  private phase: FrameSink;
  private inFlight = 0;
  private inputHeld = false;
  private streamClosed = false;
  private resolveClosed!: () => void;
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  /** Large read replies and gathered write payloads, reused. */
  private readonly buffers = new BufferPool();
  /** The native sender, once in transmission on a socket. */
  private sender: SocketSender | undefined;
  /** Whether to watch the socket between requests; see input-poll.ts. */
  readonly poll = new InputPoll();
  private pollScheduled = false;
  private pollBuffer: Buffer | undefined;
  /** Input comes lent through `options.lend`, not through the stream's events. */
  private readonly lentInput: boolean;
  /** Requests framed since the last poll was due: a burst (more than one) is not polled for. */
  private requestsSincePoll = 0;
  /** The negotiated export, once in transmission. */
  negotiated: Negotiated | undefined;
  readonly closed: Promise<void>;

  constructor(
    private readonly stream: Duplex,
    options: ConnectionOptions,
  ) {
    const id = options.id;
    const log = options.log ?? silentLog;
    this.log =
      id === undefined ? log : (level, event, fields) => log(level, event, { conn: id, ...fields });
    this.maxInFlight = options.maxInFlight ?? 64;
    this.maxQueued = options.maxQueuedReplies ?? 64;
    this.closed = new Promise<void>((resolve) => {
      this.resolveClosed = resolve;
    }).then(() => {
      try {
        this.negotiated?.export.detach?.();
      } catch (err) {
        this.log('error', 'detach-failed', { error: err });
      }
    });
    this.writer = new ReplyWriter(stream);
    const handshake = new Handshake(
      { registry: options.registry, writer: this.writer, log: this.log },
      { transmission: (n) => this.enterTransmission(n), end: (kind, why) => this.end(kind, why) },
    );
    this.phase = handshake;
    const sink: FrameSink = {
      frame: (data, lent) => this.phase.frame(data, lent),
      skipped: () => this.phase.skipped(),
    };
    this.framer = new Framer(sink, handshake.start(), (size) => this.buffers.take(size));
    this.writer.onChange = () => this.updateFlow();
    this.lentInput = options.lend !== undefined;
    this.listen(options.lend);
  }

  /** Ends the connection at once (a hard disconnect); in-flight requests still finish. */
  destroy(reason = 'the server closed the connection'): void {
    this.end('hard', reason);
  }

  get status(): ConnectionStatus {
    return this.statusValue;
  }

  /** Requests being run against the export. */
  get requestsInFlight(): number {
    return this.inFlight;
  }

  /**
   * Stops reading, lets in-flight requests finish and their replies go out, then closes the
   * stream; a client still haggling is simply disconnected. Resolves with `closed`.
   */
  shutdown(): Promise<void> {
    if (this.negotiated === undefined) {
      this.end('hard', 'the server is shutting down');
      return this.closed;
    }
    this.lower(STATUS.SHUTDOWN);
    this.framer.stop();
    this.finishIfIdle();
    return this.closed;
  }

  private listen(lend: ConnectionOptions['lend']): void {
    const s = this.stream;
    if (lend !== undefined) lend((chunk) => this.onData(chunk, true));
    else s.on('data', (chunk: Buffer) => this.onData(chunk, false));
    s.on('end', () => this.end('soft', 'the client closed its side'));
    s.on('error', (err) => {
      this.log('debug', 'stream-error', { error: err });
      this.end('hard', `stream error: ${err.message}`);
    });
    s.on('close', () => {
      this.streamClosed = true;
      this.lower(STATUS.DEAD);
      this.framer.stop();
      this.settle();
    });
  }

  /** Frames `chunk`; `lent`: its memory is the caller's again once this returns. */
  private onData(chunk: Buffer, lent: boolean): void {
    this.poll.received();
    this.schedulePoll();
    try {
      this.writer.gathering(() => this.framer.push(chunk, lent));
    } catch (err) {
      if (err instanceof ProtocolError) this.end('hard', err.message);
      else {
        this.log('error', 'internal-error', { error: err });
        this.end('hard', 'internal error');
      }
    }
  }

  private enterTransmission(n: Negotiated): Need {
    this.negotiated = n;
    try {
      n.export.attach?.();
    } catch (err) {
      this.log('error', 'attach-failed', { error: err });
    }
    this.log('info', 'transmission', { export: n.export.name, flags: n.flags });
    this.openSender();
    const transmission = new Transmission(n, this.host(n), this.log);
    this.phase = transmission;
    return transmission.start();
  }

  /**
   * Replies go through the native sender from here on, where the stream is a socket and the
   * addon is built; a sender that cannot start leaves the stream's own writes in charge.
   */
  private openSender(): void {
    try {
      const sender = SocketSender.open(this.stream);
      if (sender !== undefined) this.writer.useSender(sender);
      this.sender = sender;
    } catch (err) {
      this.log('warn', 'sender-unavailable', { error: err });
    }
  }

  private host(n: Negotiated) {
    const ctx: CommandContext = {
      negotiated: n,
      writer: this.writer,
      buffers: this.buffers,
      plan: new ReadPlan(),
      header: Buffer.alloc(OFFSET_DATA_PAYLOAD),
      log: this.log,
    };
    return {
      execute: (req: Request, payload: Buffer | undefined, lent: boolean) => {
        this.requestsSincePoll++;
        // Another request already waits in the input: this one is part of a burst.
        const more = this.framer.buffered >= REQUEST.size;
        const now = executeAtOnce(ctx, req, more, payload);
        if (now !== false) {
          // Done already; only a reply that had to queue is still in flight.
          if (payload !== undefined && !lent) this.buffers.give(payload);
          if (now.sent !== undefined) this.track(now.sent);
          return;
        }
        // The export has the payload on loan until its write settles: a lent one is copied.
        const kept = lent && payload !== undefined ? this.keep(payload) : payload;
        this.track(execute(ctx, req, kept), kept);
      },
      reject: (req: Request, r: Rejection) => this.track(sendError(ctx, req, r.errno, r.reason)),
      disconnect: () => this.end('soft', 'the client sent NBD_CMD_DISC'),
    };
  }

  /** A copy of a lent payload, from the pool. */
  private keep(payload: Buffer): Buffer {
    const copy = this.buffers.take(payload.length);
    payload.copy(copy);
    return copy;
  }

  /** Counts `work` in flight until it settles; then gives `loaned` back to the pool. */
  private track(work: Promise<void>, loaned?: Buffer): void {
    this.inFlight++;
    this.updateFlow();
    const settled = () => {
      if (loaned !== undefined) this.buffers.give(loaned);
      this.inFlight--;
      if (this.inFlight === 0) this.schedulePoll();
      this.updateFlow();
      this.finishIfIdle();
    };
    work.then(settled, (err: unknown) => {
      this.log('error', 'internal-error', { error: err });
      settled();
    });
  }

  /** Ends the session: 'soft' lets in-flight work finish first, 'hard' destroys now. */
  private end(kind: 'soft' | 'hard', reason: string): 'stop' {
    if (this.status > STATUS.DEAD) {
      // A hard ending after the client said goodbye (EPIPE on the last reply) is routine.
      const level = kind === 'hard' && this.status > STATUS.CLIENT_DONE ? 'warn' : 'debug';
      this.log(level, 'disconnect', { kind, reason });
    }
    this.framer.stop();
    if (kind === 'hard') {
      this.lower(STATUS.DEAD);
      this.stream.destroy();
    } else {
      this.lower(STATUS.CLIENT_DONE);
      this.finishIfIdle();
    }
    return 'stop';
  }

  /** Once no longer active and idle: send what is queued, then end and close the stream. */
  private finishIfIdle(): void {
    if (this.status === STATUS.ACTIVE || this.inFlight > 0) return;
    if (this.streamClosed || this.stream.destroyed) {
      this.settle();
      return;
    }
    void this.writer.flushed().then(() => {
      if (this.inFlight > 0 || this.stream.destroyed) return;
      if (this.stream.writableEnded) return;
      this.stream.end(() => this.stream.destroy());
    });
  }

  /** Resolves `closed` once the stream is gone and nothing is in flight. */
  private settle(): void {
    if (this.streamClosed && this.inFlight === 0) this.resolveClosed();
  }

  private lower(to: ConnectionStatus): void {
    if (to < this.statusValue) this.statusValue = to;
    this.updateFlow();
  }

  private schedulePoll(): void {
    if (this.pollScheduled || this.sender === undefined) return;
    this.pollScheduled = true;
    setImmediate(this.pollInput);
  }

  /**
   * Watches the socket for a moment before the event loop sleeps (input-poll.ts says when
   * and for how long): the client's next request is then framed without a wake-up.
   */
  private readonly pollInput = (): void => {
    this.pollScheduled = false;
    const burst = this.requestsSincePoll > 1;
    this.requestsSincePoll = 0;
    const sender = this.sender;
    if (sender === undefined || !sender.usable || this.status !== STATUS.ACTIVE) return;
    if (burst || this.inputHeld || this.inFlight > 0) return;
    // Input the stream already holds comes first: only poll when it holds none.
    if (
      !this.lentInput &&
      (this.stream.readableLength > 0 || this.stream.readableFlowing !== true)
    ) {
      return;
    }
    if (!this.poll.due()) return;
    this.pollBuffer ??= Buffer.allocUnsafeSlow(POLL_BUFFER_SIZE);
    const n = sender.awaitInput(this.pollBuffer, BUDGET_US);
    if (n <= 0) {
      // Nothing in time, or the end or an error, which the stream's own read then meets.
      if (n === -EAGAIN) this.poll.miss();
      return;
    }
    this.poll.hit();
    this.onData(this.pollBuffer.subarray(0, n), true);
  };

  private updateFlow(): void {
    const hold =
      this.status === STATUS.ACTIVE &&
      (this.inFlight >= this.maxInFlight || this.writer.pending >= this.maxQueued);
    if (hold === this.inputHeld) return;
    this.inputHeld = hold;
    if (hold) {
      this.framer.hold();
      this.stream.pause();
    } else {
      this.stream.resume();
      this.framer.release();
    }
  }
}

/** Serves one client on `stream` until it disconnects. */
export function serveConnection(stream: Duplex, options: ConnectionOptions): NbdConnection {
  return new NbdConnection(stream, options);
}
