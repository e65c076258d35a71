/**
 * `SnapshotterServer`: containerd's `containerd.services.snapshots.v1.Snapshots` gRPC service
 * on a UNIX socket (mode 0600), so containerd can use thinp as a proxy snapshotter
 * (`[proxy_plugins.thinp] type = "snapshot"`), over a `SnapshotService`.
 *
 * The .proto files (proto/containerd/, written from containerd's API definition) are loaded
 * at start with @grpc/proto-loader. Requests are decoded into plain objects, checked, and
 * passed on; every failure answers with the gRPC code errors.ts maps it to, and a message
 * that names the problem and the fix. The `snapshotter` field of every request (the proxy's
 * configured name) and containerd's namespace header are not needed: the keys containerd
 * sends already carry its namespace.
 */

import { chmod, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { grpcMessage, toGrpcCode } from './errors.js';
import type { SnapshotInfo, SnapshotMount, SnapshotService } from './service.js';
import type { Timestamp } from './timestamps.js';

// src/plugin/containerd/ under tsx and dist/plugin/containerd/ after the build both sit three
// levels below the package root, beside proto/.
const PROTO_DIR = fileURLToPath(new URL('../../../proto/containerd/', import.meta.url));

/** How many Infos one List message carries. */
const LIST_BATCH = 100;

const KINDS = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' } as const;

interface WireInfo {
  name?: string;
  parent?: string;
  kind?: string;
  createdAt?: { seconds?: number; nanos?: number } | null;
  updatedAt?: { seconds?: number; nanos?: number } | null;
  labels?: Record<string, string>;
}

type Call<T> = grpc.ServerUnaryCall<T, unknown>;
type Reply = grpc.sendUnaryData<unknown>;

export interface SnapshotterServerOptions {
  /** Told about every call: method, milliseconds, the error if it failed, the key or name. */
  onCall?: (method: string, ms: number, err?: unknown, key?: string) => void;
}

export class SnapshotterServer {
  private readonly server = new grpc.Server();
  private socketPath: string | undefined;

  constructor(
    private readonly service: SnapshotService,
    private readonly options: SnapshotterServerOptions = {},
  ) {}

  /** Listens on `socket` (a stale socket file is replaced), mode 0600. */
  async listen(socket: string): Promise<void> {
    const definition = protoLoader.loadSync(path.join(PROTO_DIR, 'snapshots.proto'), {
      includeDirs: [PROTO_DIR],
      longs: Number,
      enums: String,
      defaults: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      containerd: { services: { snapshots: { v1: { Snapshots: grpc.ServiceClientConstructor } } } };
    };
    this.server.addService(
      loaded.containerd.services.snapshots.v1.Snapshots.service,
      this.handlers(),
    );
    await mkdir(path.dirname(socket), { recursive: true, mode: 0o700 });
    await rm(socket, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err === null ? resolve() : reject(err),
      );
    });
    await chmod(socket, 0o600);
    this.socketPath = socket;
  }

  /** Stops accepting, lets calls in progress finish (5 s at most), removes the socket. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 5000);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    if (this.socketPath !== undefined) await rm(this.socketPath, { force: true });
  }

  private handlers(): grpc.UntypedServiceImplementation {
    const s = this.service;
    const unary =
      <T>(name: string, fn: (req: T) => Promise<unknown> | unknown) =>
      (call: Call<T>, reply: Reply) => {
        const started = Date.now();
        const key = keyOf(call.request);
        Promise.resolve()
          .then(() => fn(call.request))
          .then(
            (result) => {
              this.options.onCall?.(name, Date.now() - started, undefined, key);
              reply(null, result);
            },
            (err: unknown) => {
              this.options.onCall?.(name, Date.now() - started, err, key);
              reply({ code: toGrpcCode(err), details: grpcMessage(err) });
            },
          );
      };
    type KeyRequest = { key: string; parent: string; labels: Record<string, string> };
    return {
      Prepare: unary<KeyRequest>('Prepare', async (r) => ({
        mounts: wireMounts(await s.prepare(r.key, r.parent, r.labels ?? {})),
      })),
      View: unary<KeyRequest>('View', async (r) => ({
        mounts: wireMounts(await s.view(r.key, r.parent, r.labels ?? {})),
      })),
      Mounts: unary<{ key: string }>('Mounts', async (r) => ({
        mounts: wireMounts(await s.mounts(r.key)),
      })),
      Commit: unary<{ name: string; key: string; labels: Record<string, string>; parent: string }>(
        'Commit',
        async (r) => {
          await s.commit(r.name, r.key, r.labels ?? {}, r.parent);
          return {};
        },
      ),
      Remove: unary<{ key: string }>('Remove', async (r) => {
        await s.remove(r.key);
        return {};
      }),
      Stat: unary<{ key: string }>('Stat', (r) => ({ info: wireInfo(s.stat(r.key)) })),
      Update: unary<{ info: WireInfo | null; updateMask: { paths?: string[] } | null }>(
        'Update',
        async (r) => ({
          info: wireInfo(await s.update(fromWire(r.info ?? {}), r.updateMask?.paths ?? [])),
        }),
      ),
      Usage: unary<{ key: string }>('Usage', (r) => s.usage(r.key)),
      Cleanup: unary<unknown>('Cleanup', async () => {
        await s.cleanup();
        return {};
      }),
      List: (call: grpc.ServerWritableStream<{ filters: string[] }, unknown>) => {
        const started = Date.now();
        try {
          const infos = s.list(call.request.filters ?? []).map(wireInfo);
          for (let i = 0; i < infos.length; i += LIST_BATCH) {
            call.write({ info: infos.slice(i, i + LIST_BATCH) });
          }
          call.end();
          this.options.onCall?.('List', Date.now() - started);
        } catch (err) {
          this.options.onCall?.('List', Date.now() - started, err);
          // grpc-js ends a server stream with a status through an 'error' event.
          call.emit('error', { code: toGrpcCode(err), details: grpcMessage(err) });
        }
      },
    };
  }
}

/** The snapshot a request is about (its key, else its name), for the log. */
function keyOf(request: unknown): string | undefined {
  const r = request as { key?: unknown; name?: unknown; info?: { name?: unknown } } | null;
  const key = r?.key ?? r?.name ?? r?.info?.name;
  return typeof key === 'string' && key !== '' ? key : undefined;
}

function wireMounts(mounts: readonly SnapshotMount[]) {
  return mounts.map((m) => ({ type: m.type, source: m.source, target: '', options: m.options }));
}

function wireInfo(i: SnapshotInfo) {
  return {
    name: i.name,
    parent: i.parent,
    kind: KINDS[i.kind],
    createdAt: i.created,
    updatedAt: i.updated,
    labels: i.labels,
  };
}

function fromWire(w: WireInfo): SnapshotInfo {
  const kind = Object.entries(KINDS).find(([, v]) => v === w.kind)?.[0] ?? 'active';
  const zero: Timestamp = { seconds: 0, nanos: 0 };
  return {
    name: w.name ?? '',
    parent: w.parent ?? '',
    kind: kind as SnapshotInfo['kind'],
    created: zero,
    updated: zero,
    labels: w.labels ?? {},
  };
}
