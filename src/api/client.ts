/**
 * `ApiClient`: StorageOperations (operations.ts) carried out by the running daemon, each
 * request made from the operation table (operation-table.ts). A failure the daemon reports
 * comes back as the same `ThinpError` class (by its `code`), message and hint, so the CLI
 * prints and exits as if it had done the work itself.
 */

import http from 'node:http';
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { DeviceListing, DockerInfo, PoolDeviceUse, RemoveOutcome } from '../driver/index.js';
import type { Change, LayerListing, LayerMetadata, RemoveLayerOutcome } from '../graph/index.js';
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
import type { ImageOperations } from './image-operations.js';
import { OPERATIONS, type OperationSpec, pathOf, type WireCall } from './operation-table.js';
import type {
  CreatedDevice,
  DeviceSpec,
  LayerSpec,
  OperationName,
  PoolSizes,
  StorageOperations,
} from './operations.js';

export class ApiClient implements StorageOperations {
  constructor(readonly socketPath: string) {}

  poolStatus = (): Promise<PoolStatus> => this.invoke('poolStatus');
  resizePool = (sizes: PoolSizes): Promise<PoolStatus> => this.invoke('resizePool', sizes);
  poolDevices = (): Promise<PoolDeviceUse[]> => this.invoke('poolDevices');
  info = (): Promise<DockerInfo> => this.invoke('info');
  listDevices = (): Promise<DeviceListing[]> => this.invoke('listDevices');
  createDevice = (name: string, spec: DeviceSpec): Promise<CreatedDevice> =>
    this.invoke('createDevice', name, spec);
  removeDevice = (name: string): Promise<RemoveOutcome> => this.invoke('removeDevice', name);
  readDevice = (name: string, offset: number, length: number | undefined): Promise<Buffer> =>
    this.invoke('readDevice', name, offset, length);
  writeDevice = (name: string, offset: number, data: Uint8Array): Promise<void> =>
    this.invoke('writeDevice', name, offset, data);
  flushDevice = (name: string): Promise<void> => this.invoke('flushDevice', name);
  listLayers = (): Promise<LayerListing[]> => this.invoke('listLayers');
  createLayer = (id: string, spec: LayerSpec): Promise<LayerListing> =>
    this.invoke('createLayer', id, spec);
  removeLayer = (id: string): Promise<RemoveLayerOutcome> => this.invoke('removeLayer', id);
  mountLayer = (id: string): Promise<string> => this.invoke('mountLayer', id);
  unmountLayer = (id: string): Promise<void> => this.invoke('unmountLayer', id);
  layerMetadata = (id: string): Promise<LayerMetadata> => this.invoke('layerMetadata', id);
  applyLayer = (id: string, tar: Readable): Promise<number> => this.invoke('applyLayer', id, tar);
  diffLayer = (id: string): Promise<Readable> => this.invoke('diffLayer', id);
  layerChanges = (id: string): Promise<Change[]> => this.invoke('layerChanges', id);

  loadImage: ImageOperations['loadImage'] = (archive) => this.invoke('loadImage', archive);
  listImages: ImageOperations['listImages'] = () => this.invoke('listImages');
  removeImage: ImageOperations['removeImage'] = (ref) => this.invoke('removeImage', ref);
  saveImage: ImageOperations['saveImage'] = (refs) => this.invoke('saveImage', refs);
  createContainer: ImageOperations['createContainer'] = (image, spec) =>
    this.invoke('createContainer', image, spec);
  mountContainer: ImageOperations['mountContainer'] = (ref) => this.invoke('mountContainer', ref);
  unmountContainer: ImageOperations['unmountContainer'] = (ref) =>
    this.invoke('unmountContainer', ref);
  removeContainer: ImageOperations['removeContainer'] = (ref) =>
    this.invoke('removeContainer', ref);
  listContainers: ImageOperations['listContainers'] = () => this.invoke('listContainers');
  containerChanges: ImageOperations['containerChanges'] = (ref) =>
    this.invoke('containerChanges', ref);
  commitContainer: ImageOperations['commitContainer'] = (ref, tag) =>
    this.invoke('commitContainer', ref, tag);

  /** The Prometheus text of `GET /metrics`. */
  async metrics(): Promise<string> {
    const res = await this.send('GET', '/metrics', {});
    const text = await readAll(res);
    if (res.statusCode !== 200) throw errorOf(res.statusCode ?? 0, text.toString('utf8'));
    return text.toString('utf8');
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

  /** Runs operation `name` on the daemon, as the operation table says it travels. */
  async invoke<K extends OperationName>(
    name: K,
    ...args: Parameters<StorageOperations[K]>
  ): Promise<Awaited<ReturnType<StorageOperations[K]>>> {
    type Result = Awaited<ReturnType<StorageOperations[K]>>;
    const spec = OPERATIONS[name] as unknown as OperationSpec<K>;
    const call = spec.encode(...args);
    const query = new URLSearchParams(call.query ?? {}).toString();
    const path = `${pathOf(spec, call.params)}${query === '' ? '' : `?${query}`}`;
    const res = await this.send(spec.method, path, call);
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      throw errorOf(status, (await readAll(res)).toString('utf8'));
    }
    if (spec.reply === 'stream') return res as unknown as Result;
    const body = await readAll(res);
    if (spec.reply === 'bytes') return body as unknown as Result;
    if (spec.reply === 'none') return undefined as Result;
    const json: unknown = JSON.parse(body.toString('utf8'));
    return spec.fromJson === undefined ? (json as Result) : spec.fromJson(json);
  }

  /** Sends one request; resolves with the response once its head arrives. */
  private send(method: string, path: string, call: WireCall): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = {};
      const json = call.json === undefined ? undefined : JSON.stringify(call.json);
      if (json !== undefined) headers['content-type'] = 'application/json';
      if (call.raw !== undefined) headers['content-type'] = 'application/octet-stream';
      if (call.raw instanceof Uint8Array) headers['content-length'] = call.raw.length;
      const req = http.request({ socketPath: this.socketPath, method, path, headers }, resolve);
      req.on('error', (err) => reject(unreachable(this.socketPath, err)));
      const raw = call.raw;
      if (raw === undefined || raw instanceof Uint8Array) {
        req.end(json ?? raw);
        return;
      }
      raw.on('error', (err) => req.destroy(err));
      raw.pipe(req);
    });
  }
}

async function readAll(res: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
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

/** A code this client does not know (a subclass's own): the class its status stands for. */
const BY_STATUS: Record<number, ErrorMaker> = {
  400: BY_CODE.BAD_INPUT as ErrorMaker,
  404: BY_CODE.NOT_FOUND as ErrorMaker,
  409: BY_CODE.BUSY as ErrorMaker,
  503: BY_CODE.UNAVAILABLE as ErrorMaker,
  507: BY_CODE.NO_SPACE as ErrorMaker,
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
  const make =
    (typeof error?.code === 'string' ? BY_CODE[error.code] : undefined) ?? BY_STATUS[status];
  return make?.(message, hint) ?? new InternalError(message, { hint });
}

function unreachable(socketPath: string, err: Error): ThinpError {
  return new UnavailableError(`the daemon does not answer on ${socketPath}: ${err.message}`, {
    hint: "start it with 'thinp daemon', or remove the stale socket",
  });
}
