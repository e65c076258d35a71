/**
 * The relay's connection to the daemon, which survives the daemon: when the socket dies
 * (clean stop, crash, restart), it reconnects, retrying for `reconnectMs` (5 minutes by
 * default), and sends again what the daemon may have lost, so the client above sees a pause,
 * never an error.
 *
 * What it keeps, and why:
 * - `pending`: requests sent and not yet answered (and those that arrived while
 *   disconnected). Every request the relay sends (read, write, flush, trim, write-zeroes) is
 *   idempotent, so sending it again is always right.
 * - `journal`: writes (and trims, write-zeroes) the daemon acknowledged since the last
 *   successful flush. A daemon that was killed may lose acknowledged writes it had not yet
 *   committed, while the filesystem above still counts on them: they are written again,
 *   in acknowledgement order and one at a time (so overlapping ones keep their order),
 *   before any pending request is sent again. A flush that succeeds drops the entries
 *   acknowledged before it was sent; past `journalLimit` bytes the relay flushes by itself.
 * - A reply with ESHUTDOWN (the daemon is stopping) is not an answer: the request stays
 *   pending and is sent again on the next connection.
 * If no connection comes back within `reconnectMs`, the pending requests fail with EIO and
 * the next request starts a new round of attempts. A daemon that answers but refuses the
 * export for `refusedMs` (30 s) has removed the device: that is final sooner, the pending
 * requests fail with EIO then instead of hanging the filesystem above for minutes. (A daemon
 * just started may refuse for a moment: it holds such devices only once it has settled.)
 */

import net from 'node:net';
import { ByteReader } from './byte-reader.js';
import { clientHandshake, type ExportInfo } from './client-handshake.js';
import { ProtocolError } from './protocol-error.js';
import { CMD, decodeSimpleReply, encodeRequest, NBD_ERRNO, SIMPLE_REPLY } from './wire.js';

export interface RelayRequest {
  type: number;
  flags: number;
  offset: number;
  length: number;
  /** The data of a write (owned by the relay until answered). */
  payload?: Buffer;
  /** Where a read's data goes. */
  into?: Buffer;
}

interface Pending extends RelayRequest {
  handle: bigint;
  /** For a flush: the last acknowledgement it covers. */
  covers?: number;
  /** A journal replay: settled with -1 when the connection dies under it. */
  replay?: boolean;
  settle: (error: number) => void;
}

interface JournalEntry extends RelayRequest {
  ack: number;
}

export interface RelayClientOptions {
  reconnectMs?: number;
  refusedMs?: number;
  journalLimit?: number;
  log?: (event: string, fields?: Record<string, unknown>) => void;
}

const MUTATING: ReadonlySet<number> = new Set([CMD.WRITE, CMD.TRIM, CMD.WRITE_ZEROES]);

export class RelayClient {
  private socket: net.Socket | undefined;
  private readonly pending = new Map<bigint, Pending>();
  private journal: JournalEntry[] = [];
  private journalBytes = 0;
  private acks = 0;
  private nextHandle = 1n;
  private reconnecting: Promise<void> | undefined;
  /** Connected, and the journal replayed: requests go out as they come. */
  private sending = false;
  private closed = false;
  private readonly log: NonNullable<RelayClientOptions['log']>;

  private constructor(
    private readonly socketPath: string,
    private readonly name: string,
    readonly info: ExportInfo,
    private readonly options: RelayClientOptions,
  ) {
    this.log = options.log ?? (() => {});
  }

  /**
   * Connects (retrying for `firstMs` while the socket refuses) and negotiates `name`; a
   * server that refuses the export fails it at once.
   */
  static async open(
    socketPath: string,
    name: string,
    firstMs: number,
    options: RelayClientOptions = {},
  ): Promise<RelayClient> {
    const { socket, reader, info } = await retry(
      () => connect(socketPath, name),
      firstMs,
      (err) => !(err instanceof ProtocolError),
    );
    const client = new RelayClient(socketPath, name, info, options);
    client.attach(socket, reader);
    client.sending = true;
    return client;
  }

  /** Sends `r`; resolves with the daemon's error number (0 on success), after any retries. */
  request(r: RelayRequest): Promise<number> {
    return new Promise((resolve) => {
      const p: Pending = { ...r, handle: this.nextHandle++, settle: resolve };
      if (r.type === CMD.FLUSH) p.covers = this.acks;
      this.pending.set(p.handle, p);
      if (this.sending && this.socket !== undefined) this.send(this.socket, p);
      else this.startReconnect();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.socket?.destroy();
  }

  private send(socket: net.Socket, p: Pending): void {
    socket.write(encodeRequest({ ...p, handle: p.handle }));
    if (p.payload !== undefined) socket.write(p.payload);
  }

  private attach(socket: net.Socket, reader: ByteReader): void {
    this.socket = socket;
    void this.pump(socket, reader);
  }

  private async pump(socket: net.Socket, reader: ByteReader): Promise<void> {
    try {
      for (;;) await this.receive(reader);
    } catch (err) {
      socket.destroy();
      if (this.socket === socket) this.socket = undefined;
      this.sending = false;
      for (const p of this.pending.values()) {
        if (p.replay === true) {
          this.pending.delete(p.handle);
          p.settle(-1);
        }
      }
      if (this.closed) return;
      this.log('disconnected', { error: String(err), pending: this.pending.size });
      this.startReconnect();
    }
  }

  private async receive(reader: ByteReader): Promise<void> {
    const reply = decodeSimpleReply(await reader.read(SIMPLE_REPLY.size));
    const p = this.pending.get(reply.handle);
    if (p === undefined) throw new Error(`a reply to unknown handle ${reply.handle}`);
    if (p.type === CMD.READ && reply.error === 0) {
      const data = await reader.read(p.length);
      data.copy(p.into as Buffer);
    }
    if (reply.error === NBD_ERRNO.ESHUTDOWN) return; // sent again on the next connection
    this.pending.delete(reply.handle);
    if (reply.error === 0 && p.replay !== true) this.acknowledged(p);
    p.settle(reply.error);
  }

  private acknowledged(p: Pending): void {
    if (MUTATING.has(p.type)) {
      const ack = ++this.acks;
      const payload = p.payload === undefined ? undefined : Buffer.from(p.payload);
      this.journal.push({
        type: p.type,
        flags: p.flags,
        offset: p.offset,
        length: p.length,
        payload,
        ack,
      });
      this.journalBytes += p.payload?.length ?? 0;
      if (this.journalBytes > (this.options.journalLimit ?? 32 * 1024 * 1024)) {
        this.journalBytes = 0; // one flush at a time: the next write past the limit asks again
        void this.request({ type: CMD.FLUSH, flags: 0, offset: 0, length: 0 });
      }
    } else if (p.type === CMD.FLUSH && p.covers !== undefined) {
      const covers = p.covers;
      this.journal = this.journal.filter((e) => e.ack > covers);
      this.journalBytes = this.journal.reduce((n, e) => n + (e.payload?.length ?? 0), 0);
    }
  }

  private startReconnect(): void {
    if (this.reconnecting !== undefined || this.closed) return;
    this.reconnecting = this.reconnect().finally(() => {
      this.reconnecting = undefined;
    });
  }

  private async reconnect(): Promise<void> {
    this.sending = false;
    const started = Date.now();
    const deadline = started + (this.options.reconnectMs ?? 300_000);
    const refusal = new RefusalClock(this.options.refusedMs ?? 30_000);
    for (;;) {
      try {
        const { socket, reader, info } = await retry(
          () => connect(this.socketPath, this.name),
          deadline - Date.now(),
          (err) => refusal.stillRetryable(err),
        );
        if (info.size !== this.info.size) {
          socket.destroy();
          return this.giveUp(`the export's size changed from ${this.info.size} to ${info.size}`);
        }
        this.attach(socket, reader);
        await this.replayJournal(socket);
        this.sending = true;
        for (const p of this.pending.values()) this.send(socket, p);
        this.log('reconnected', { afterMs: Date.now() - started, resent: this.pending.size });
        return;
      } catch (err) {
        if (err instanceof ProtocolError) {
          return this.giveUp(`the daemon refuses export ${this.name}: ${err.message}`);
        }
        if (Date.now() >= deadline) return this.giveUp(String(err));
      }
    }
  }

  /** Fails every pending request with EIO; the journal stays for the next connection. */
  private giveUp(why: string): void {
    this.log('gave-up', { error: why, failing: this.pending.size });
    const failing = [...this.pending.values()];
    this.pending.clear();
    for (const p of failing) p.settle(NBD_ERRNO.EIO);
  }

  /**
   * The journal's entries again, one at a time, in acknowledgement order; throws when the
   * connection dies under it (the caller connects again and starts over).
   */
  private async replayJournal(socket: net.Socket): Promise<void> {
    const entries = this.journal;
    for (const e of entries) {
      const error = await new Promise<number>((resolve) => {
        const p: Pending = { ...e, handle: this.nextHandle++, settle: resolve, replay: true };
        this.pending.set(p.handle, p);
        this.send(socket, p);
      });
      if (error === -1) throw new Error('the connection closed during the replay');
      if (error !== 0) this.log('replay-failed', { offset: e.offset, length: e.length, error });
    }
    if (entries.length > 0) this.log('replayed', { writes: entries.length });
  }
}

/** How long the daemon has refused the export without a break (other failures reset it). */
class RefusalClock {
  private since: number | undefined;

  constructor(private readonly limitMs: number) {}

  stillRetryable(err: unknown): boolean {
    if (!(err instanceof ProtocolError)) {
      this.since = undefined;
      return true;
    }
    this.since ??= Date.now();
    return Date.now() - this.since < this.limitMs;
  }
}

async function connect(socketPath: string, name: string) {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
  socket.on('error', () => {}); // the reader sees the failure
  const reader = new ByteReader(socket);
  try {
    const info = await clientHandshake(reader, socket, name);
    return { socket, reader, info };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/**
 * `attempt` until it succeeds, backing off from 50 ms to 1 s; the last error after `forMs`,
 * or at once when it is not `retryable`.
 */
async function retry<T>(
  attempt: () => Promise<T>,
  forMs: number,
  retryable: (err: unknown) => boolean = () => true,
): Promise<T> {
  const deadline = Date.now() + forMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    try {
      return await attempt();
    } catch (err) {
      if (!retryable(err) || Date.now() + delay > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
