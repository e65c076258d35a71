/**
 * daemon: the process wiring: opens the pool, adapts thin devices to NBD exports, starts
 * the NBD, API and metrics listeners, commits periodically, and shuts down in order on
 * signals. Imports every layer but cli. `main.ts` is the daemon process `thinp daemon`
 * starts (the CLI may not import this layer, so it launches it).
 */

export {
  DAEMON_COMMIT_INTERVAL_MS,
  type DaemonHandle,
  type DaemonOptions,
  startDaemon,
  stopOnSignals,
} from './daemon.js';
export { DeviceExports, preferredSize } from './device-export.js';
export { type DaemonLaunch, decodeLaunch, describeAddress } from './launch.js';
export { type DaemonLog, jsonLog, type LogLevel, nbdLog, stderrLog } from './log.js';
export { checkNbdGreeting } from './smoke.js';
