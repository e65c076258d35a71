export {
  CATALOG_FILE,
  SnapshotCatalog,
  type SnapshotKind,
  type SnapshotRecord,
} from './catalog.js';
export { grpcMessage, SnapshotStateError, toGrpcCode } from './errors.js';
export { FilterSyntaxError, matchesAny, parseFilters } from './filters.js';
export {
  SnapshotterServer,
  type SnapshotterServerOptions,
} from './grpc-server.js';
export { LayerSnapshotDevices } from './layer-devices.js';
export {
  type SnapshotDevices,
  type SnapshotInfo,
  type SnapshotMount,
  SnapshotService,
} from './service.js';
export { type SnapshotterStart, startSnapshotter } from './start.js';
export { fromNs, now, nowNs, type Timestamp } from './timestamps.js';
