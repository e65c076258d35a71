/**
 * daemon: the process wiring: opens the pool, adapts thin devices to NBD exports, starts
 * the NBD, API and metrics listeners, commits periodically, autoextends, and shuts down in
 * order on signals. Imports every layer but cli. Nothing is exported yet.
 */

export {};
