/**
 * api: the control API on ROOT/thinp.sock (HTTP and JSON), the event stream, Prometheus
 * metrics, and the typed client the CLI uses. Imports driver, pool, tools, config and util.
 */

export { ApiClient, errorOf, isDaemonRunning } from './client.js';
export { type EngineContext, StorageEngine } from './engine.js';
export { EventHub, type EventListener, type StampedEvent, type ThinpEvent } from './events.js';
export { toHttpStatus } from './http-status.js';
export type { ContainerSpec, ImageOperations, RemovedContainer } from './image-operations.js';
export {
  CommitStats,
  escapeLabel,
  METRICS_CONTENT_TYPE,
  type MetricsSnapshot,
  renderMetrics,
} from './metrics.js';
export { OPERATIONS, type OperationSpec, type OperationTable } from './operation-table.js';
export {
  type CreatedDevice,
  type DeviceSpec,
  type LayerSpec,
  MAX_DATA_REQUEST,
  type OperationName,
  type PoolSizes,
  type StorageOperations,
} from './operations.js';
export {
  type ApiContext,
  type ApiRequest,
  type ApiResponse,
  findOperation,
  route,
} from './routes.js';
export { ApiServer, type ApiServerOptions, errorBody } from './server.js';
