/**
 * api: the control API on ROOT/thinp.sock (HTTP and JSON), the event stream, Prometheus
 * metrics, and the typed client the CLI uses. Imports driver, pool, tools, config and util.
 * Nothing is exported yet.
 */

export {};
