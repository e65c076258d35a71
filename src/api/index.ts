/**
 * api: the control API on ROOT/thinp.sock (HTTP and JSON), the event stream, Prometheus
 * metrics, and the typed client the CLI uses. Imports driver, pool, tools, config and util.
 */

export { ApiClient, type CreatedDevice, errorOf, isDaemonRunning } from './client.js';
export { EventHub, type EventListener, type StampedEvent, type ThinpEvent } from './events.js';
export { toHttpStatus } from './http-status.js';
export { remoteImageOperations } from './image-client.js';
export {
  CommitStats,
  escapeLabel,
  METRICS_CONTENT_TYPE,
  type MetricsSnapshot,
  renderMetrics,
} from './metrics.js';
export { type ApiContext, type ApiRequest, type ApiResponse, route } from './routes.js';
export { ApiServer, type ApiServerOptions, errorBody } from './server.js';
