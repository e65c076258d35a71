/**
 * `ApiClient`: the CLI's side of the control API, one typed method per resource. A failure
 * the daemon reports comes back as the same `ThinpError` class (by its `code`), message and
 * hint, so the CLI prints and exits as if it had done the work itself.
 */

import http from 'node:http';
import net from 'node:net';
import type { DeviceListing, DockerInfo, PoolDeviceUse, RemoveOutcome } from '../driver/index.js';
import type { PoolStatus } from '../pool/index.js';
import {
  BadInputError,
  BusyError,
  ConfigError,
  ExistsError,
  InternalError,
  IoError,
  NoSpaceError,
  NotFoundError,
  ReadOnlyError,
  type ThinpError,
  UnavailableError,
  UsageError,
} from '../util/index.js';
import type { StampedEvent } from './events.js';

export interface CreatedDevice {
  name: string;
  id: number;
  size: number;
  origin: string | null;
}

export class ApiClient {
  constructor(readonly socketPath: string) {}

  poolStatus(): Promise<PoolStatus> {
    return this.call('GET', '/pool') as Promise<PoolStatus>;
  }

  /** Grows the data and/or metadata space, or adds a device; resolves with the new status. */
  resizePool(sizes: {
    dataSize?: number;
    metadataSize?: number;
    addDevice?: string;
  }): Promise<PoolStatus> {
    return this.call('POST', '/pool/resize', sizes) as Promise<PoolStatus>;
  }

  /** The devices that hold the pool. */
  poolDevices(): Promise<PoolDeviceUse[]> {
    return this.call('GET', '/pool/devices') as Promise<PoolDeviceUse[]>;
  }

  info(): Promise<DockerInfo> {
    return this.call('GET', '/info') as Promise<DockerInfo>;
  }

  listDevices(): Promise<DeviceListing[]> {
    return this.call('GET', '/devices') as Promise<DeviceListing[]>;
  }

  createDevice(name: string, size: number): Promise<CreatedDevice> {
    return this.call('POST', '/devices', { name, size }) as Promise<CreatedDevice>;
  }

  createSnapshot(name: string, origin: string): Promise<CreatedDevice> {
    return this.call('POST', '/devices', { name, origin }) as Promise<CreatedDevice>;
  }

  async removeDevice(name: string): Promise<RemoveOutcome> {
    const r = (await this.call('DELETE', `/devices/${encodeURIComponent(name)}`)) as {
      outcome: RemoveOutcome;
    };
    return r.outcome;
  }

  /** The Prometheus text of `GET /metrics`. */
  async metrics(): Promise<string> {
    const { status, text } = await this.request('GET', '/metrics');
    if (status !== 200) throw errorOf(status, text);
    return text;
  }

  /**
   * Calls `onEvent` for each event of `GET /events` until `close()` is called or the
   * daemon goes; resolves once the stream is open.
   */
  events(onEvent: (e: StampedEvent) => void): Promise<{ close(): void; ended: Promise<void> }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.socketPath, path: '/events' }, (res) => {
        let rest = '';
        const ended = new Promise<void>((done) => res.on('close', done));
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          const lines = (rest + chunk).split('\n');
          rest = lines.pop() ?? '';
          for (const line of lines) if (line !== '') onEvent(JSON.parse(line) as StampedEvent);
        });
        resolve({ close: () => req.destroy(), ended });
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** `length` bytes of device `name` from `offset` (at most 32 MiB). */
  async readDevice(name: string, offset: number, length: number): Promise<Buffer> {
    const path = `/devices/${encodeURIComponent(name)}/data?offset=${offset}&length=${length}`;
    const { status, bytes } = await this.raw('GET', path);
    if (status !== 200) throw errorOf(status, bytes.toString('utf8'));
    return bytes;
  }

  /** Writes `data` to device `name` at `offset` (at most 32 MiB). */
  async writeDevice(name: string, offset: number, data: Uint8Array): Promise<void> {
    const path = `/devices/${encodeURIComponent(name)}/data?offset=${offset}`;
    const { status, bytes } = await this.raw('PUT', path, data);
    if (status !== 204) throw errorOf(status, bytes.toString('utf8'));
  }

  /** Makes every completed write durable. */
  async flushDevice(name: string): Promise<void> {
    const { status, bytes } = await this.raw('POST', `/devices/${encodeURIComponent(name)}/flush`);
    if (status !== 204) throw errorOf(status, bytes.toString('utf8'));
  }

  private raw(
    method: string,
    path: string,
    body?: Uint8Array,
  ): Promise<{ status: number; bytes: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers:
            body === undefined
              ? {}
              : { 'content-type': 'application/octet-stream', 'content-length': body.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, bytes: Buffer.concat(chunks) }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', (err) => reject(unreachable(this.socketPath, err)));
      req.end(body);
    });
  }

  /** JSON in and out; a non-2xx answer is thrown as its ThinpError. */
  async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const { status, text } = await this.request(method, path, body);
    if (status < 200 || status > 299) throw errorOf(status, text);
    return text === '' ? undefined : JSON.parse(text);
  }

  private request(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; text: string }> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers: payload === undefined ? {} : { 'content-type': 'application/json' },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          res.on('error', reject);
        },
      );
      req.on('error', (err) => reject(unreachable(this.socketPath, err)));
      req.end(payload);
    });
  }
}

/**
 * Whether a daemon answers on `controlSocket`: a socket file nobody listens on (a daemon
 * that was killed) is not a running daemon.
 */
export function isDaemonRunning(controlSocket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(controlSocket);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------------------------------

type ErrorMaker = (message: string, hint: string | undefined) => ThinpError;

const BY_CODE: Record<string, ErrorMaker> = {
  BAD_INPUT: (m, hint) => new BadInputError(m, { hint }),
  USAGE: (m, hint) => new UsageError(m, { hint }),
  CONFIG: (m, hint) => new ConfigError(m, { hint }),
  NOT_FOUND: (m, hint) => new NotFoundError(m, { hint }),
  EXISTS: (m, hint) => new ExistsError(m, { hint }),
  BUSY: (m, hint) => new BusyError(m, { hint }),
  UNAVAILABLE: (m, hint) => new UnavailableError(m, { hint }),
  READ_ONLY: (m, hint) => new ReadOnlyError(m, { hint }),
  NO_SPACE: (m, hint) => new NoSpaceError('data', m, { hint }),
  IO: (m, hint) => new IoError('the daemon', 'request', m, { hint }),
};

/** The ThinpError an error response describes. */
export function errorOf(status: number, text: string): ThinpError {
  let error: { code?: unknown; message?: unknown; hint?: unknown } | undefined;
  try {
    error = (JSON.parse(text) as { error?: typeof error }).error;
  } catch {
    error = undefined;
  }
  const message = typeof error?.message === 'string' ? error.message : `HTTP ${status}: ${text}`;
  const hint = typeof error?.hint === 'string' ? error.hint : undefined;
  const make = typeof error?.code === 'string' ? BY_CODE[error.code] : undefined;
  return make?.(message, hint) ?? new InternalError(message, { hint });
}

function unreachable(socketPath: string, err: Error): ThinpError {
  return new UnavailableError(`the daemon does not answer on ${socketPath}: ${err.message}`, {
    hint: "start it with 'thinp daemon', or remove the stale socket",
  });
}
