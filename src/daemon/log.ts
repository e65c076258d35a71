/**
 * The daemon's log: one JSON object a line, `{"time", "level", "event", ...fields}`, for
 * every event (start, listen, connections, device changes, commits, errors, shutdown).
 * Errors in fields become `{name, code, message}`.
 */

import type { NbdLog } from '../nbd/index.js';
import { ThinpError } from '../util/index.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type DaemonLog = (event: string, fields?: Record<string, unknown>, level?: LogLevel) => void;

/** A log that writes each event as one JSON line through `write` (the line has no newline). */
export function jsonLog(write: (line: string) => void): DaemonLog {
  return (event, fields = {}, level = 'info') => {
    const record = { time: new Date().toISOString(), level, event, ...fields };
    try {
      write(JSON.stringify(record, replacer));
    } catch {
      // Logging never takes the daemon down.
    }
  };
}

/** Writes to stderr. */
export const stderrLog: DaemonLog = jsonLog((line) => process.stderr.write(`${line}\n`));

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    return {
      name: value.name,
      ...(value instanceof ThinpError ? { code: value.code } : {}),
      message: value.message,
    };
  }
  return value;
}

/** NBD debug events worth a line: connections coming and going, requests refused. */
const NBD_DEBUG_KEPT = new Set(['connected', 'disconnected', 'request-rejected']);

/** The NBD server's events as daemon log lines named `nbd-EVENT`; per-request debug is dropped. */
export function nbdLog(log: DaemonLog): NbdLog {
  return (level, event, fields) => {
    if (level === 'debug' && !NBD_DEBUG_KEPT.has(event)) return;
    const kept = event === 'request-rejected' ? 'warn' : 'info';
    log(`nbd-${event}`, fields, level === 'debug' ? kept : level);
  };
}
