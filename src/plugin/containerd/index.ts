export {
  CATALOG_FILE,
  SnapshotCatalog,
  type SnapshotKind,
  type SnapshotRecord,
} from './catalog.js';
export { grpcMessage, SnapshotStateError, toGrpcCode } from './errors.js';
export { FilterSyntaxError, matchesAny, parseFilters } from './filters.js';
export {
  DEFAULT_SNAPSHOTTER_SOCKET,
  SnapshotterServer,
  type SnapshotterServerOptions,
} from './grpc-server.js';
export {
  type SnapshotDevices,
  type SnapshotInfo,
  type SnapshotMount,
  SnapshotService,
} from './service.js';
export { fromNs, now, nowNs, type Timestamp } from './timestamps.js';
