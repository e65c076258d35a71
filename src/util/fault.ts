/**
 * Crash points for tests: when the environment variable THINP_CRASH_AT names a point, the
 * process kills itself with SIGKILL on reaching it, as a power cut or `kill -9` would —
 * no exit handlers, no flushes. Unset (always, outside tests), a crash point does nothing.
 */

export const CRASH_AT_ENV = 'THINP_CRASH_AT';

export function crashPoint(name: string): void {
  if (process.env[CRASH_AT_ENV] === name) process.kill(process.pid, 'SIGKILL');
}
