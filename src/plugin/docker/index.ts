export {
  type DockerDriverOptions,
  DockerGraphDriver,
  storageOptions,
} from './graph-driver.js';
export { type InitRequest, PluginRequestError } from './protocol.js';
export {
  DockerPluginServer,
  type DockerPluginServerOptions,
  errorText,
} from './server.js';
export {
  type DockerPluginStart,
  initRecordFile,
  type PluginLog,
  startDockerPlugin,
} from './start.js';
export { applyDockerOptions, type OptionChange, planDockerOptions } from './storage-options.js';
