/**
 * `startSnapshotter`: containerd's proxy snapshotter for a running daemon: the catalog in
 * ROOT/containerd/, the service over the daemon's layer store, the gRPC server on `socket`.
 */

import path from 'node:path';
import type { Config } from '../../config/index.js';
import type { ThinLayerStore } from '../../graph/index.js';
import type { PluginLog } from '../docker/start.js';
import { SnapshotCatalog } from './catalog.js';
import { SnapshotterServer } from './grpc-server.js';
import { LayerSnapshotDevices } from './layer-devices.js';
import { SnapshotService } from './service.js';

export interface SnapshotterStart {
  config: Config;
  layers: ThinLayerStore;
  socket: string;
  log: PluginLog;
}

export async function startSnapshotter(start: SnapshotterStart): Promise<SnapshotterServer> {
  const { config, layers, log } = start;
  // A snapshot without a parent is a snapshot of the base device: make it now (or check and
  // grow it), as Docker's driver does at its start, not inside the first Prepare.
  await layers.refreshBase();
  const catalog = await SnapshotCatalog.open(path.join(config.root, 'containerd'));
  const unsettled = catalog.unsettled().map((r) => r.name);
  const service = await SnapshotService.open(
    catalog,
    new LayerSnapshotDevices(layers, config.layout.mountDir),
  );
  if (unsettled.length > 0) log('snapshots-settled', { snapshots: unsettled }, 'warn');
  const server = new SnapshotterServer(service, {
    onCall: (method, ms, err, key) => {
      if (err === undefined) log('snapshotter-call', { method, key, ms });
      else log('snapshotter-call-failed', { method, key, ms, error: err }, 'warn');
    },
  });
  await server.listen(start.socket);
  log('listening', { containerdSnapshotter: start.socket });
  return server;
}
