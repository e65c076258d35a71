/**
 * The CLI's boundary mapping: every failure becomes one line on stderr, starting "thinp: ",
 * and an exit status: 1 for a user error, 2 for a usage error.
 */

import { ThinpError, UsageError } from '../util/index.js';

export const EXIT_OK = 0;
export const EXIT_USER_ERROR = 1;
export const EXIT_USAGE_ERROR = 2;

export function toExitCode(error: unknown): number {
  return error instanceof UsageError ? EXIT_USAGE_ERROR : EXIT_USER_ERROR;
}

/** The line to print for `error`; an unexpected error is reported as a bug, with its stack. */
export function errorReport(error: unknown): string {
  if (error instanceof ThinpError) {
    return `thinp: ${error.describe()}\n`;
  }
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return `thinp: internal error, please report it: ${detail}\n`;
}
