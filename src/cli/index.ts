/**
 * cli: the `thinp` command. Parses arguments, loads the configuration, prints tables or
 * JSON, and maps errors to exit statuses (1 user error, 2 usage error). Imports api,
 * driver, pool, tools, config and util.
 */

export { type CliIo, processIo } from './io.js';
export { run } from './run.js';
