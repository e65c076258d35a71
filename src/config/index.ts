/**
 * config: the `dm.*` storage options (Docker's names), the configuration file, the root
 * directory's layout, and the loader that turns defaults, file and flags into one checked
 * Config. Imports only util.
 */

export { parseConfigFile, readConfigFile } from './config-file.js';
export {
  DEFAULT_DOCKER_PLUGIN_SOCKET,
  DEFAULT_SNAPSHOTTER_SOCKET,
  type RootLayout,
  rootLayout,
} from './layout.js';
export {
  type Config,
  describeOrigin,
  type LoadRequest,
  loadConfig,
  type Origin,
  type PoolBacking,
} from './load.js';
export type { OptionSpec } from './option-kinds.js';
export {
  describeDefault,
  FILESYSTEMS,
  type Filesystem,
  fieldOfKey,
  MAX_METADATA_SIZE,
  NO_SPACE_POLICIES,
  type NoSpacePolicy,
  OPTION_FIELDS,
  OPTIONS,
  type OptionField,
  STATIC_DEFAULTS,
  type StorageOptions,
} from './options.js';
