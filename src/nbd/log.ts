/**
 * How the server reports what happens: one structured event per call, e.g.
 * `log('warn', 'request-failed', { cmd: 'NBD_CMD_WRITE', errno: 'NBD_ENOSPC', error })`.
 * The daemon turns these into log lines; tests usually pass nothing.
 */

export type NbdLogLevel = 'debug' | 'info' | 'warn' | 'error';

export type NbdLog = (level: NbdLogLevel, event: string, fields?: Record<string, unknown>) => void;

/** Drops every event. */
export const silentLog: NbdLog = () => {};
