/**
 * `NbdServer`: accepts NBD clients on UNIX sockets and/or TCP ports and serves each with an
 * `NbdConnection` over the same `ExportRegistry`. Each connection is independent: one client's
 * protocol violation or disconnect ends only its own connection.
 *
 *     const server = new NbdServer({ registry });
 *     await server.listen({ path: '/run/thinp/nbd.sock' });
 *     await server.listen({ host: '127.0.0.1', port: 10809 });
 *     …
 *     await server.close(); // stop accepting, finish in-flight requests, close connections
 */

import net from 'node:net';
import { type ConnectionOptions, NbdConnection } from './connection.js';
import type { ExportRegistry } from './export.js';
import { lendingSocket } from './lending-socket.js';
import { type NbdLog, silentLog } from './log.js';

export type ListenAddress = { path: string } | { host: string; port: number };

export interface NbdServerOptions {
  registry: ExportRegistry;
  log?: NbdLog;
  maxInFlight?: ConnectionOptions['maxInFlight'];
  maxQueuedReplies?: ConnectionOptions['maxQueuedReplies'];
}

export class NbdServer {
  private readonly listeners: net.Server[] = [];
  private readonly connections = new Set<NbdConnection>();
  private readonly log: NbdLog;
  private nextId = 1;
  private closing: Promise<void> | undefined;
  /** The input polls of connections that have closed (input-poll.ts). */
  private readonly pastPolls = { hits: 0, misses: 0 };

  constructor(private readonly options: NbdServerOptions) {
    this.log = options.log ?? silentLog;
  }

  /** Connections being served right now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Input polls between requests (input-poll.ts) of every connection so far: found, or not. */
  inputPolls(): { hits: number; misses: number } {
    let { hits, misses } = this.pastPolls;
    for (const c of this.connections) {
      hits += c.poll.hits;
      misses += c.poll.misses;
    }
    return { hits, misses };
  }

  /**
   * Starts accepting on a UNIX socket `path` or a TCP `host:port` (port 0 picks a free one);
   * may be called once per address. Resolves with where it listens.
   */
  async listen(address: ListenAddress): Promise<ListenAddress> {
    if (this.closing !== undefined) throw new Error('the NBD server is closed');
    const listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) =>
      this.accept(socket),
    );
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      const onListening = () => {
        listener.off('error', reject);
        resolve();
      };
      if ('path' in address) listener.listen(address.path, onListening);
      else listener.listen(address.port, address.host, onListening);
    });
    listener.on('error', (err) => this.log('error', 'listener-error', { error: err }));
    this.listeners.push(listener);
    const bound = boundAddress(listener, address);
    this.log('info', 'listening', { ...bound });
    return bound;
  }

  /**
   * Stops accepting, lets every connection finish its in-flight requests and send their
   * replies, then closes them. Connections still open after `graceMs` are destroyed.
   * Idempotent.
   */
  close(graceMs = 30_000): Promise<void> {
    this.closing ??= this.closeNow(graceMs);
    return this.closing;
  }

  private async closeNow(graceMs: number): Promise<void> {
    const stopped = Promise.all(this.listeners.map(closeListener));
    const drained = Promise.all([...this.connections].map((c) => c.shutdown()));
    const timer = setTimeout(() => {
      for (const c of this.connections) c.destroy('the server shut down');
    }, graceMs);
    try {
      await Promise.all([stopped, drained]);
    } finally {
      clearTimeout(timer);
    }
    this.log('info', 'closed', {});
  }

  private accept(accepted: net.Socket): void {
    if (this.closing !== undefined) {
      accepted.destroy();
      return;
    }
    const { socket, lend } = lendingSocket(accepted);
    socket.setNoDelay(true);
    const id = String(this.nextId++);
    const connection = new NbdConnection(socket, {
      registry: this.options.registry,
      log: this.log,
      id,
      ...(lend === undefined ? {} : { lend }),
      ...(this.options.maxInFlight === undefined ? {} : { maxInFlight: this.options.maxInFlight }),
      ...(this.options.maxQueuedReplies === undefined
        ? {}
        : { maxQueuedReplies: this.options.maxQueuedReplies }),
    });
    this.connections.add(connection);
    this.log('debug', 'connected', { conn: id, remote: socket.remoteAddress ?? 'unix' });
    void connection.closed.then(() => {
      this.connections.delete(connection);
      this.pastPolls.hits += connection.poll.hits;
      this.pastPolls.misses += connection.poll.misses;
      this.log('debug', 'disconnected', { conn: id });
    });
  }
}

function boundAddress(listener: net.Server, requested: ListenAddress): ListenAddress {
  const address = listener.address();
  if (address !== null && typeof address === 'object') {
    return { host: address.address, port: address.port };
  }
  return requested;
}

function closeListener(listener: net.Server): Promise<void> {
  return new Promise((resolve) => listener.close(() => resolve()));
}
